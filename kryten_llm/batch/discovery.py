"""Before the first row: ask the servers which models they have, and whether they take the key.

Between the plan (:mod:`kryten_llm.batch.plan`, which sends nothing) and the runner. One
request per HTTP provider of the run, through the provider's own model listing
(``list_models``: ``GET /models`` of an OpenAI-compatible server; LM Studio lists the loaded
models) or, for a provider without one, its probe:

- a model ``auto`` becomes the first model the server lists, as the live bot's probe does;
- a model ``all`` becomes one target per listed model (every model LM Studio has loaded);
- a refused key (401/403) stops the run here with the variable to set, instead of failing
  every row; other failures are left to the run (each row retries) unless a model had to be
  discovered.

Then the known prices (:mod:`kryten_llm.batch.prices`) are filled in for the models now known.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import aiohttp
import structlog

from kryten_llm.batch.plan import BatchPlan
from kryten_llm.batch.prices import with_prices
from kryten_llm.batch.targets import DISCOVERED, Target
from kryten_llm.config import ProviderConfig
from kryten_llm.errors import AuthFailed, ConfigError, ProviderError
from kryten_llm.llm.base import create_provider

log = structlog.get_logger(__name__)

CHECKED_TYPES = ("openai", "anthropic")  # providers behind a key and a network
LIST_SECONDS = 10.0  # budget of the one listing request per provider


async def discover(plan: BatchPlan) -> BatchPlan:
    """The plan with ``auto``/``all`` models resolved, keys checked, prices filled in.

    Args:
        plan: from :func:`~kryten_llm.batch.plan.make_plan`.

    Raises:
        ConfigError: a key was refused, or a model could not be discovered (the server
            is down or lists none).
    """
    providers = dict(plan.llm.providers)
    keys = dict.fromkeys(key for t in plan.targets for key in t.chain)
    checked = [key for key in keys if providers[key].type in CHECKED_TYPES]
    listed: dict[str, list[str] | None] = {}
    if checked:
        async with aiohttp.ClientSession() as session:
            for key in checked:
                listed[key] = await _listing(key, providers[key], session)
    targets: list[Target] = []
    for target in plan.targets:
        key = target.chain[0]
        config = providers[key]
        if config.model not in DISCOVERED or config.type not in CHECKED_TYPES:
            targets.append(target)
            continue
        models = listed.get(key)
        if not models:
            raise ConfigError(
                [
                    (
                        f"--provider {target.spec}",
                        f"model {config.model!r}: the server listed no model",
                        "load a model on the server, or give --model NAME",
                    )
                ]
            )
        chosen = models if config.model == "all" else models[:1]
        for model in chosen:
            new_key = f"{target.spec}/{model}" if key != target.spec or len(chosen) > 1 else key
            providers[new_key] = config.model_copy(update={"model": model})
            chain = (new_key, *target.chain[1:])
            targets.append(Target(f"{target.spec}/{model}", chain, model))
    used = {key for t in targets for key in t.chain}
    llm = plan.llm.model_copy(
        update={
            "providers": {k: v for k, v in providers.items() if k in used},
            "default_provider": targets[0].chain[0],
            "fallback": [name for name in plan.llm.fallback if name in used],
        }
    )
    llm = with_prices(llm, plan.settings.batch.prices)
    _no_repeats(targets)
    return dataclasses.replace(plan, llm=llm, targets=tuple(targets))


async def _listing(
    key: str, config: ProviderConfig, session: aiohttp.ClientSession
) -> list[str] | None:
    """The models the provider lists (None when it has no listing or it failed).

    Raises:
        ConfigError: the key was refused; or a failure when a model had to be discovered.
    """
    provider = create_provider(key, config, session)
    try:
        lister = getattr(provider, "list_models", None)
        if lister is None:
            await provider.probe(LIST_SECONDS)
            return None
        models: list[str] = await lister(LIST_SECONDS)
        return models
    except AuthFailed as exc:
        raise ConfigError(
            [(f"--provider {key}", f"the server refused the key: {exc}", _key_fix(config))]
        ) from None
    except ProviderError as exc:
        if config.model in DISCOVERED:
            raise ConfigError(
                [
                    (
                        f"--provider {key}",
                        f"cannot list the models for model {config.model!r}: {exc}",
                        "start the server (and load a model), or give --model NAME",
                    )
                ]
            ) from None
        log.warning("batch_provider_check_failed", provider=key, error=str(exc))
        return None


def _key_fix(config: ProviderConfig) -> str:
    if config.api_key_env:
        return f"export {config.api_key_env}=<a valid key> (or give --api-key-env NAME)"
    return "set the provider's api_key_env in the config, or give --api-key-env NAME"


def _no_repeats(targets: Sequence[Target]) -> None:
    labels = [t.label for t in targets]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ConfigError(
            [("providers", f"{', '.join(repeated)} would be asked twice", "remove the repeat")]
        )
