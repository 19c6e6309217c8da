"""``kryten-llm explore``: the command line of the topic explorer.

The boundary of the explore package: :mod:`kryten_llm.explore.plan` turns the arguments and
the config file into settings, providers and an output folder; this module runs the explorer
with progress, stop signals and the dashboard link, and turns domain errors into what to fix
and an exit code of :mod:`kryten_llm.console` (0 done, 1 every provider failed, 2 usage or
configuration error, 130 interrupted by Ctrl+C or SIGTERM, files written). :func:`add_parser`
plugs the subcommand into the main CLI; ``python -m kryten_llm.explore`` runs it on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kryten_llm.console import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    on_stop_signals,
)
from kryten_llm.errors import ConfigError, ExploreError
from kryten_llm.explore.bus import ExploreLink, run_id
from kryten_llm.explore.dedup import DEFAULT_THRESHOLD
from kryten_llm.explore.explorer import Explorer, StopReason
from kryten_llm.explore.plan import Plan, plan_run
from kryten_llm.explore.producer import ProducerStatus
from kryten_llm.explore.progress import Progress
from kryten_llm.logs import configure_logging
from kryten_llm.pools import DEFAULT_POOL_DIR

if TYPE_CHECKING:
    from collections.abc import Sequence

PROBE_SECONDS = 10.0  # how long an "auto"-model provider has to name its model


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
        "anthropic:URL, local:GGUF, scripted[:wordlist|echo], random[:SEED]); repeatable; "
        "default: the "
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
        default=DEFAULT_THRESHOLD,
        metavar="F",
        help="trigram Jaccard of the canonical forms (articles dropped, plurals singular) at "
        f"which an item with the same numbers is a near duplicate (default {DEFAULT_THRESHOLD}; "
        "1 = exact duplicates only)",
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
    web = parser.add_argument_group("web page")
    web.add_argument(
        "--web",
        action="store_true",
        help="serve a page to start, watch and stop runs instead (no bot needed); runs go "
        "to --output (default output/), one folder per topic",
    )
    web.add_argument("--host", default="127.0.0.1", help="--web: address (default 127.0.0.1)")
    web.add_argument("--port", type=int, default=8790, help="--web: port (default 8790; 0: any)")
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
    if args.web:
        return _web(args)
    try:
        plan = plan_run(args)
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


async def _explore(plan: Plan) -> StopReason:
    import aiohttp

    from kryten_llm.llm import build_manager

    async with aiohttp.ClientSession() as session:
        manager = build_manager(plan.llm, session)
        auto = [n for n, cfg in plan.llm.providers.items() if cfg.model == "auto"]
        if auto:
            results = await manager.probe_all(PROBE_SECONDS, names=auto)
            problems = [
                (f"provider {r.name}", r.detail, "check its URL") for r in results if not r.ok
            ]
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
            try:
                explorer.resume_from(checkpoint)
            except ExploreError:  # another topic
                raise ConfigError(
                    [
                        (
                            "--output",
                            f"the folder holds the topic {checkpoint.topic!r}",
                            "use the same --topic, or another --output folder",
                        )
                    ]
                ) from None
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
        with on_stop_signals(lambda _sig: explorer.stop(StopReason.INTERRUPTED)):
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
        if producer["last_error"] and producer["state"] == ProducerStatus.FAILED:
            print(
                f"  {producer['name']} ({producer['provider']}): {producer['last_error']}",
                file=sys.stderr,
            )
    return reason


def _web(args: argparse.Namespace) -> int:
    """``--web``: the page of :mod:`kryten_llm.explore.web` until Ctrl+C."""
    from kryten_llm.config import load_settings
    from kryten_llm.explore.web import serve

    try:
        settings = load_settings(args.config)
        return asyncio.run(serve(args, settings))
    except ConfigError as exc:
        _print_problems(exc)
        return EXIT_USAGE
    except OSError as exc:
        print(
            f"kryten-llm explore: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr
        )
        return EXIT_USAGE


def _print_problems(exc: ConfigError) -> None:
    print(exc.report("kryten-llm explore: cannot start:"), file=sys.stderr)
