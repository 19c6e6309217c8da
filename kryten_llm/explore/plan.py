"""The plan of an ``explore`` run: the command line's arguments resolved before anything starts.

The part of the command line (:mod:`kryten_llm.explore.cli`) that turns arguments and the
config file into :class:`Plan`: settings, providers, the output folder (locked for the run, its
checkpoint read) and the fallback pool. This is the boundary: library errors in library terms
(:class:`~kryten_llm.errors.ExploreError`) become a :class:`~kryten_llm.errors.ConfigError`
that names the flag to fix.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kryten_llm.config import LLMConfig, ProviderConfig, Settings, load_settings
from kryten_llm.errors import ConfigError, ExploreError
from kryten_llm.explore.output import Checkpoint, OutputStore
from kryten_llm.explore.settings import ExploreSettings, invalid_settings
from kryten_llm.llm.specs import parse_provider_spec
from kryten_llm.pools import FallbackPool, personality_pool_name, slug

# The flag of each checked setting, in the order problems are reported.
FLAGS = {
    "producers": "--producers",
    "iterations": "--iterations",
    "target": "--target",
    "min_yield": "--min-yield",
    "yield_window": "--yield-window",
    "similarity": "--similarity",
    "batch": "--batch",
    "max_item_chars": "--max-item-chars",
    "request_timeout": "--timeout",
    "checkpoint_items": "--checkpoint-items",
    "checkpoint_seconds": "--checkpoint-seconds",
}


class Plan:
    """Everything resolved from the arguments before the run starts; the output folder is
    locked for this run and its checkpoint (if any) loaded."""

    def __init__(
        self,
        settings: ExploreSettings,
        llm: LLMConfig,
        providers: list[str],
        store: OutputStore,
        checkpoint: Checkpoint | None,
        pool: FallbackPool | None,
        pool_filter: Callable[[str], bool] | None,
        args: argparse.Namespace,
    ) -> None:
        self.settings = settings
        self.llm = llm
        self.providers = providers
        self.store = store
        self.checkpoint = checkpoint
        self.pool = pool
        self.pool_filter = pool_filter
        self.args = args
        self.nats_servers: list[str] | None = None
        self.service = "llm"


def plan_run(args: argparse.Namespace) -> Plan:
    """Resolve the arguments; the output folder is locked when this returns.

    Raises:
        ConfigError: what to fix (including a folder another run is writing to).
    """
    config = load_settings(args.config)
    numbers = _numbers(args)
    providers, order = resolve_providers(config, args.provider, args.model, args.api_key_env)
    output: Path | None = args.output
    instructions = ""
    pool: FallbackPool | None = None
    pool_filter: Callable[[str], bool] | None = None
    topic: str | None = args.topic
    if args.for_trigger is not None or args.for_personality is not None:
        pool_name, instructions, default_topic = _pool_target(config, args)
        topic = topic or default_topic
        pool = FallbackPool.load(args.pool_dir, pool_name)
        pool_filter = _chat_line_filter(config)
    if output is None:
        if not topic:
            raise ConfigError([("--topic", "required", "name a topic, or --output DIR to resume")])
        output = Path("output") / slug(topic)
    store = OutputStore(output)
    if args.resume and not store.exists():  # before lock() creates the folder
        raise ConfigError([("--resume", f"{output} holds no output.json", "check --output")])
    _lock(store)
    try:  # the folder is ours from here: a later problem gives it back
        checkpoint = _load(store)
        if checkpoint is not None:
            topic = topic or checkpoint.topic
        if not topic:
            raise ConfigError([("--topic", "required", "name a topic")])
        settings = ExploreSettings(
            topic=topic, **numbers, instructions=instructions, seed=args.seed
        )
        llm = LLMConfig(
            providers=providers,
            default_provider=order[0],
            retry=config.llm.retry,
            circuit=config.llm.circuit,
        )
        plan = Plan(settings, llm, order, store, checkpoint, pool, pool_filter, args)
        if args.nats is not None:
            plan.nats_servers = [args.nats] if args.nats else list(config.nats.servers)
            plan.service = config.service.name
        return plan
    except BaseException:
        store.unlock()
        raise


def _numbers(args: argparse.Namespace) -> dict[str, Any]:
    """The checked settings from their flags.

    Raises:
        ConfigError: a value breaks its rule (:data:`~kryten_llm.explore.settings.LIMITS`),
            named by its flag.
    """
    values = {name: getattr(args, flag[2:].replace("-", "_")) for name, flag in FLAGS.items()}
    problems = [
        (FLAGS[name], f"{value} is out of range", f"use {rule}")
        for name, value, rule in invalid_settings(values)
    ]
    if problems:
        raise ConfigError(problems)
    return values


def _lock(store: OutputStore) -> None:
    """:meth:`OutputStore.lock`, its problem told in terms of ``--output``."""
    try:
        store.lock()
    except ExploreError as exc:
        if isinstance(exc.__cause__, BlockingIOError):
            fix = "wait for it to finish, or choose another --output folder"
        else:
            fix = "check --output"
        raise ConfigError([(str(store.folder), str(exc), fix)]) from None


def _load(store: OutputStore) -> Checkpoint | None:
    """:meth:`OutputStore.load`, its problem told in terms of ``--output``."""
    try:
        return store.load()
    except ExploreError as exc:
        if isinstance(exc.__cause__, OSError):
            fix = "check the folder"
        else:
            fix = "choose another --output folder or remove the file"
        raise ConfigError([(str(store.checkpoint_path), str(exc), fix)]) from None


def resolve_providers(
    config: Settings, specs: Sequence[str], model: str | None, api_key_env: str | None
) -> tuple[dict[str, ProviderConfig], list[str]]:
    """The providers to explore with, from ``--provider`` specs and the config.

    Args:
        config: the loaded settings (their ``llm.providers``).
        specs: names of configured providers or inline ``TYPE:WHERE`` specs; empty means the
            config's chain, or the scripted word list when the config is the built-in one.
        model: the model of inline providers (``"auto"`` when None; ``"wordlist"`` for
            scripted).
        api_key_env: the key variable of inline providers.

    Returns:
        The provider configs by name, and the names in ``--provider`` order (repeats kept,
        so a provider named twice gets twice the producers).

    Raises:
        ConfigError: an unknown name, an unknown type, an invalid inline spec, a missing key.
    """
    if not specs:
        defaults = LLMConfig().providers
        if config.llm.providers.keys() == defaults.keys():
            specs = ["scripted"]
            print(
                "kryten-llm explore: no --provider or provider config: using the scripted word "
                "list (try --provider openai:http://HOST:PORT/v1)",
                file=sys.stderr,
            )
        else:
            specs = config.llm.chain
    chosen: dict[str, ProviderConfig] = {}
    order: list[str] = []
    inline: dict[str, str] = {}
    for spec in specs:
        if spec in config.llm.providers:
            name, provider = spec, config.llm.providers[spec]
        elif spec in inline:
            name = inline[spec]
            provider = chosen[name]
        else:
            try:
                kind, provider = parse_provider_spec(spec, model=model, api_key_env=api_key_env)
            except ConfigError as exc:
                known = ", ".join(sorted(config.llm.providers)) or "none"
                where, message, fix = exc.problems[0]
                raise ConfigError(
                    [(where, f"not a configured provider ({known}); {message}", fix)]
                ) from None
            name = f"{kind}-{sum(1 for n in inline.values() if n.startswith(kind)) + 1}"
            inline[spec] = name
        if provider.api_key_env and provider.resolve_api_key() is None:
            raise ConfigError(
                [
                    (
                        f"provider {name}",
                        f"environment variable {provider.api_key_env} is not set",
                        f"export {provider.api_key_env}=<your key>",
                    )
                ]
            )
        chosen[name] = provider
        order.append(name)
    return chosen, order


def _pool_target(config: Settings, args: argparse.Namespace) -> tuple[str, str, str]:
    """The pool name, the extra instructions and a default topic for a pool run."""
    limit = config.formatting.max_message_length
    chat = (
        f"Write every item as one self-contained chat line under {limit} characters, "
        "plain text, no hashtags, not starting with / or !."
    )
    if args.for_trigger is not None:
        word = next((w for w in config.triggers.words if w.name == args.for_trigger), None)
        if word is None:
            known = ", ".join(w.name for w in config.triggers.words) or "none configured"
            raise ConfigError(
                [
                    (
                        "--for-trigger",
                        f"no trigger word named {args.for_trigger!r} ({known})",
                        "check the name or add it under triggers.words in the config",
                    )
                ]
            )
        extra = f" {word.context}" if word.context else ""
        topic = "chat lines about " + ", ".join(word.patterns)
        return args.for_trigger, chat + extra, topic
    name, persona = _personality(config, args.for_personality or "")
    character = getattr(persona, "character_name", name)
    description = getattr(persona, "description", "")
    style = getattr(persona, "response_style", "")
    instructions = (
        f"{chat} Every line is something {character}, {description}, would say in the chat. {style}"
    )
    return personality_pool_name(name), instructions, f"things {character} might say in chat"


def _personality(config: Settings, wanted: str) -> tuple[str, Any]:
    """The personality ``wanted`` (or the active one), for both config shapes."""
    personalities = getattr(config, "personalities", None)
    if isinstance(personalities, dict) and personalities:
        name = wanted or str(getattr(config, "active_personality", next(iter(personalities))))
        if name not in personalities:
            raise ConfigError(
                [
                    (
                        "--for-personality",
                        f"no personality named {name!r} ({', '.join(sorted(personalities))})",
                        "check the name",
                    )
                ]
            )
        return name, personalities[name]
    persona = getattr(config, "personality", None)
    return wanted or getattr(persona, "character_name", "default"), persona


def _chat_line_filter(config: Settings) -> Callable[[str], bool]:
    """Lines fit for the chat: short enough, not a command."""
    limit = config.formatting.max_message_length
    prefixes = (*config.filters.command_prefixes, "/")

    def accept(line: str) -> bool:
        return len(line) <= limit and not line.startswith(prefixes)

    return accept
