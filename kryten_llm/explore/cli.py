"""``kryten-llm explore``: the command line of the topic explorer.

The boundary of the explore package: arguments and the config file become
:class:`ExploreSettings`, providers and an output folder; domain errors become one line that
says what to fix and an exit code (0 done, 1 every provider failed, 2 usage or configuration
error, 130 interrupted by Ctrl+C or SIGTERM, files written). :func:`add_parser` plugs the
subcommand into the main CLI; ``python -m kryten_llm.explore`` runs it on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kryten_llm.config import LLMConfig, ProviderConfig, Settings, load_settings
from kryten_llm.errors import ConfigError
from kryten_llm.explore.bus import ExploreLink, run_id
from kryten_llm.explore.explorer import Explorer, ExploreSettings, StopReason
from kryten_llm.explore.output import Checkpoint, OutputStore
from kryten_llm.explore.progress import Progress
from kryten_llm.llm.specs import parse_provider_spec
from kryten_llm.logs import configure_logging
from kryten_llm.pools import DEFAULT_POOL_DIR, FallbackPool, personality_pool_name, slug

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def add_parser(subparsers: Any) -> None:
    """Add the ``explore`` subcommand to the main CLI's subparsers.

    Args:
        subparsers: what ``ArgumentParser.add_subparsers()`` returned.
    """
    parser = subparsers.add_parser(
        "explore",
        help="collect many unique items on a topic from several providers at once",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)


DESCRIPTION = """\
Ask one or more LLM providers, with several concurrent producers, for items on a topic until
enough unique ones are found. Exact and near duplicates are dropped; the run can be stopped
with Ctrl+C and resumed from its output folder.

examples:
  kryten-llm explore --topic "cult films of the 1970s" --target 500 \\
      --provider openai:http://127.0.0.1:8080/v1 --producers 4
  kryten-llm explore --config config.json --topic "bad movie puns" --for-trigger puns
  kryten-llm explore --topic demo --provider scripted --iterations 5   (no API key needed)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The explore options (shared by the subcommand and ``python -m kryten_llm.explore``)."""
    parser.add_argument("--topic", help="what to list (required unless resuming a folder)")
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="JSON config file (its llm.providers)"
    )
    parser.add_argument(
        "--provider",
        action="append",
        default=[],
        metavar="SPEC",
        help="a provider name from the config, or inline TYPE:WHERE (openai:URL, "
        "anthropic:URL, local:GGUF, scripted[:wordlist|echo]); repeatable; default: the "
        "config's chain, or the scripted word list without --config",
    )
    parser.add_argument("--model", help='model of inline providers (default "auto")')
    parser.add_argument(
        "--api-key-env", metavar="VAR", help="environment variable with inline providers' key"
    )
    parser.add_argument("--producers", type=int, default=2, metavar="N", help="default 2")
    stop = parser.add_mutually_exclusive_group()
    stop.add_argument(
        "--iterations", type=int, metavar="N", help="requests per producer, then stop"
    )
    stop.add_argument("--target", type=int, metavar="N", help="stop at N unique items")
    parser.add_argument(
        "--min-yield",
        type=float,
        default=0.05,
        metavar="F",
        help="stop when new items / lines received over the last K answers falls below F "
        "(default 0.05; 0 disables)",
    )
    parser.add_argument(
        "--yield-window", type=int, default=20, metavar="K", help="answers for --min-yield"
    )
    parser.add_argument(
        "--similarity",
        type=float,
        default=0.85,
        metavar="F",
        help="trigram Jaccard at which an item is a near duplicate (default 0.85; 1 = exact "
        "duplicates only)",
    )
    parser.add_argument("--batch", type=int, default=20, help="items asked for per request")
    parser.add_argument("--max-item-chars", type=int, default=200, help="longer lines rejected")
    parser.add_argument(
        "--timeout", type=float, default=60.0, metavar="SECONDS", help="per request"
    )
    parser.add_argument(
        "--output", type=Path, metavar="DIR", help="output folder (default output/<topic-slug>)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="require a run to resume in the folder (a folder with output.json is always resumed)",
    )
    parser.add_argument("--checkpoint-items", type=int, default=50, metavar="N")
    parser.add_argument("--checkpoint-seconds", type=float, default=1.0, metavar="SECONDS")
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--for-trigger", metavar="NAME", help="also add new lines to this trigger's fallback pool"
    )
    target.add_argument(
        "--for-personality",
        nargs="?",
        const="",
        metavar="NAME",
        help="also add in-character lines to the personality's fallback pool (default: active)",
    )
    parser.add_argument(
        "--pool-dir", type=Path, default=DEFAULT_POOL_DIR, metavar="DIR", help="default fallback/"
    )
    parser.add_argument(
        "--progress",
        choices=["auto", "tty", "lines", "off"],
        default="auto",
        help="one redrawn line on a terminal, plain lines otherwise",
    )
    parser.add_argument("--progress-interval", type=float, metavar="SECONDS")
    parser.add_argument(
        "--nats",
        nargs="?",
        const="",
        metavar="URL",
        help="show the run on the bot's dashboard (and let it be stopped there) through this "
        "NATS server; without URL, the config's nats.servers",
    )
    parser.add_argument("--seed", type=int, help="seed of the digest's sampling")
    parser.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        default="WARNING",
    )


def build_parser() -> argparse.ArgumentParser:
    """The standalone parser of ``python -m kryten_llm.explore``."""
    parser = argparse.ArgumentParser(
        prog="kryten-llm explore",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and :func:`run`."""
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Run ``explore`` with parsed arguments.

    Returns:
        0 done, 1 every provider failed, 2 usage or configuration error, 130 interrupted.
    """
    configure_logging(args.log_level, "console")
    try:
        plan = _plan(args)
    except ConfigError as exc:
        _print_problems(exc)
        return EXIT_USAGE
    try:
        reason = asyncio.run(_explore(plan))
    except ConfigError as exc:
        _print_problems(exc)
        return EXIT_USAGE
    except KeyboardInterrupt:  # a second Ctrl+C while writing
        return EXIT_INTERRUPTED
    except OSError as exc:
        print(f"kryten-llm explore: cannot write the output: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        plan.store.unlock()
    if reason is StopReason.INTERRUPTED:
        return EXIT_INTERRUPTED
    if reason is StopReason.PROVIDERS_FAILED:
        return EXIT_FAILED
    return EXIT_OK


class _Plan:
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


def _plan(args: argparse.Namespace) -> _Plan:
    """Resolve the arguments; the output folder is locked when this returns.

    Raises:
        ConfigError: what to fix (including a folder another run is writing to).
    """
    config = load_settings(args.config)
    _check_numbers(args)
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
    store.lock()
    try:  # the folder is ours from here: a later problem gives it back
        checkpoint = store.load()
        if checkpoint is not None:
            topic = topic or checkpoint.topic
        if not topic:
            raise ConfigError([("--topic", "required", "name a topic")])
        settings = ExploreSettings(
            topic=topic,
            producers=args.producers,
            iterations=args.iterations,
            target=args.target,
            min_yield=args.min_yield,
            yield_window=args.yield_window,
            similarity=args.similarity,
            batch=args.batch,
            max_item_chars=args.max_item_chars,
            request_timeout=args.timeout,
            checkpoint_items=args.checkpoint_items,
            checkpoint_seconds=args.checkpoint_seconds,
            instructions=instructions,
            seed=args.seed,
        )
        llm = LLMConfig(
            providers=providers,
            default_provider=order[0],
            retry=config.llm.retry,
            circuit=config.llm.circuit,
        )
        plan = _Plan(settings, llm, order, store, checkpoint, pool, pool_filter, args)
        if args.nats is not None:
            plan.nats_servers = [args.nats] if args.nats else list(config.nats.servers)
            plan.service = config.service.name
        return plan
    except BaseException:
        store.unlock()
        raise


def _check_numbers(args: argparse.Namespace) -> None:
    checks = [
        ("--producers", args.producers, args.producers >= 1, "at least 1"),
        ("--iterations", args.iterations, args.iterations is None or args.iterations >= 1, ">= 1"),
        ("--target", args.target, args.target is None or args.target >= 1, ">= 1"),
        ("--min-yield", args.min_yield, 0 <= args.min_yield <= 1, "between 0 and 1"),
        ("--yield-window", args.yield_window, args.yield_window >= 1, ">= 1"),
        ("--similarity", args.similarity, 0 < args.similarity <= 1, "in (0, 1]"),
        ("--batch", args.batch, 1 <= args.batch <= 500, "between 1 and 500"),
        ("--max-item-chars", args.max_item_chars, args.max_item_chars >= 1, ">= 1"),
        ("--timeout", args.timeout, args.timeout > 0, "> 0"),
        ("--checkpoint-items", args.checkpoint_items, args.checkpoint_items >= 1, ">= 1"),
        ("--checkpoint-seconds", args.checkpoint_seconds, args.checkpoint_seconds > 0, "> 0"),
    ]
    problems = [
        (flag, f"{value} is out of range", f"use {rule}")
        for flag, value, ok, rule in checks
        if not ok
    ]
    if problems:
        raise ConfigError(problems)


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


async def _explore(plan: _Plan) -> StopReason:
    import aiohttp

    from kryten_llm.llm import create_provider
    from kryten_llm.llm.manager import ProviderManager

    async with aiohttp.ClientSession() as session:
        providers = {
            name: create_provider(name, cfg, session) for name, cfg in plan.llm.providers.items()
        }
        manager = ProviderManager(providers, plan.llm)
        auto = [n for n, cfg in plan.llm.providers.items() if cfg.model == "auto"]
        if auto:
            results = await asyncio.gather(*(_probe(providers[n]) for n in auto))
            problems = [(f"provider {n}", err, "check its URL") for n, err in results if err]
            if problems:
                raise ConfigError(problems)
        explorer = Explorer(
            plan.settings,
            manager,
            plan.providers,
            plan.store,
            pool=plan.pool,
            pool_filter=plan.pool_filter,
        )
        checkpoint = plan.checkpoint
        if checkpoint is not None:
            explorer.resume_from(checkpoint)
            print(
                f"kryten-llm explore: resuming {plan.store.folder} with "
                f"{len(checkpoint.items)} known items",
                file=sys.stderr,
            )
        progress = Progress(
            explorer.snapshot,
            sys.stderr,
            mode=plan.args.progress,
            interval=plan.args.progress_interval,
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, explorer.stop, StopReason.INTERRUPTED)
        reporter = asyncio.create_task(progress.run())
        link = None
        if plan.nats_servers is not None:
            link = ExploreLink(
                plan.nats_servers,
                plan.service,
                run_id(str(plan.store.folder)),
                explorer.snapshot,
                explorer.stop,
            )
            if not await link.start():
                link = None
        try:
            reason = await explorer.run()
        finally:
            if link is not None:
                await link.close()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            reporter.cancel()
            await asyncio.gather(reporter, return_exceptions=True)
            progress.finish()
    meta = explorer.metadata()
    rate = meta["duplicate_rate"]
    print(
        f"kryten-llm explore: {reason.value}: {meta['items']} items in {plan.store.folder}"
        + (f" (duplicate rate {rate:.1%})" if rate is not None else ""),
        file=sys.stderr,
    )
    if plan.pool is not None:
        print(
            f"kryten-llm explore: pool {plan.pool.path} holds {len(plan.pool)} lines",
            file=sys.stderr,
        )
    for producer in meta["producers"]:
        if producer["last_error"] and producer["state"] == "failed":
            print(
                f"  {producer['name']} ({producer['provider']}): {producer['last_error']}",
                file=sys.stderr,
            )
    return reason


async def _probe(provider: Any) -> tuple[str, str | None]:
    from kryten_llm.errors import ProviderError

    try:
        await asyncio.wait_for(provider.probe(10.0), 10.0)
    except (ProviderError, TimeoutError) as exc:
        return provider.name, str(exc) or "probe timed out"
    return provider.name, None


def _print_problems(exc: ConfigError) -> None:
    print(exc.report("kryten-llm explore: cannot start:"), file=sys.stderr)
