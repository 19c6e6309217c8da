"""``kryten-llm batch``: the command line of batch mode.

    kryten-llm batch INPUT [options]        run a batch (or --resume one)
    kryten-llm batch list|status|cancel|show|logs ...   see :mod:`kryten_llm.batch.actions`

The first positional argument is the action when it is one of those words, otherwise the
input file (a file really called ``list`` can be given as ``./list``). :func:`add_parser`
plugs the subcommand into the main parser; :func:`run` executes it. This is the boundary where
errors become one line saying what to fix, and an exit code (from :mod:`kryten_llm.console`):
0 all rows answered, 1 some rows failed (or the run stopped on error), 2 usage or
configuration error (a refused key, an output another run is writing), 130 interrupted or
cancelled (the run is resumable).

Every run option's ``dest`` is its :class:`~kryten_llm.batch.options.BatchOptions` field, so
:func:`_options` needs no mapping; flags not given take the config's ``batch`` defaults. The
library names options by their field (``batch_id``, "the resume option") and the store by its
path; :func:`_in_flags` puts the command line's flags in their place.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import re
import signal
import sys
from typing import Any

from kryten_llm.batch.actions import ACTIONS, act
from kryten_llm.batch.api import execute
from kryten_llm.batch.discovery import discover
from kryten_llm.batch.locking import output_lock
from kryten_llm.batch.options import RESUMABLE_OVERRIDES, BatchOptions
from kryten_llm.batch.plan import BatchPlan, make_plan
from kryten_llm.batch.prices import PRICES_AS_OF
from kryten_llm.batch.progress import Progress, summary_lines
from kryten_llm.batch.runner import BatchResult, BatchRunner
from kryten_llm.batch.store import RunStore
from kryten_llm.batch.storetypes import RUN_STATUSES, RunStatus
from kryten_llm.console import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    on_stop_signals,
)
from kryten_llm.errors import (
    ConfigError,
    InputError,
    KrytenLLMError,
    RunExists,
    RunNotFound,
)

_FIELDS = {f.name for f in dataclasses.fields(BatchOptions)}
# Library names that are not an argument's dest, and the flag or argument they are on the CLI.
_NAMES = {"input": "INPUT", "schema": "--expect-json", "expect_json": "--expect-json", "db": "--db"}
_OPTION_REF = re.compile(r"\bthe (\w+) option\b")


def add_parser(subparsers: Any) -> None:
    """Add the ``batch`` subcommand to ``subparsers`` (from ``add_subparsers``)."""
    parser = subparsers.add_parser(
        "batch",
        help="answer many prompts from a file (resumable), or list/status/cancel/show/logs",
        description="Answer many prompts from a .txt/.csv/.json/.jsonl/.xlsx file through "
        "the configured providers. Actions: list, status ID, cancel ID, show ID, logs.",
    )
    configure_parser(parser)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add every batch argument to ``parser``."""
    parser.add_argument(
        "target", nargs="?", metavar="INPUT|ACTION", help="input file, or " + " / ".join(ACTIONS)
    )
    parser.add_argument("run_id", nargs="?", metavar="ID", help="the batch (status/cancel/show)")
    parser.add_argument("--config", metavar="FILE", help="kryten-llm config (providers)")
    parser.add_argument(
        "--db", default="batch.db", metavar="FILE", help="run store (default ./batch.db)"
    )
    parser.add_argument("--input-format", choices=["txt", "csv", "json", "jsonl", "xlsx"])
    parser.add_argument("--template", help='prompt template over columns, e.g. "Sum up {text}"')
    parser.add_argument(
        "--prompt-file", metavar="FILE", help="the template in a file (archived by its hash)"
    )
    parser.add_argument("--system", help="system prompt sent with every request")
    parser.add_argument(
        "--provider",
        action="append",
        dest="providers",
        metavar="NAME|TYPE[:WHERE]",
        help="a configured provider, or inline: openai:URL, anthropic:URL, local:PATH.gguf, "
        "scripted[:echo|wordlist], or a bare type; repeat to compare models",
    )
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="NAME",
        help='model name (one for all providers, or one per --provider); "auto": the first '
        'the server lists, "all": every one (batch logs: only this model)',
    )
    parser.add_argument(
        "--api-key-env", metavar="NAME", help="key variable of inline specs (OPENAI_API_KEY...)"
    )
    parser.add_argument(
        "--output", "-o", metavar="FILE", help="results file (.csv/.json/.jsonl; - for stdout)"
    )
    parser.add_argument("--output-dir", metavar="DIR", help="one JSON file per item (<id>.json)")
    parser.add_argument("--id-column", metavar="COL", help="the column naming each item's file")
    parser.add_argument("--sample", type=int, metavar="N", help="a random sample of N rows")
    parser.add_argument("--seed", type=int, metavar="S", help="the sample's random seed")
    parser.add_argument("--show", action="store_true", help="print answers even with an output")
    parser.add_argument("--quiet", "-q", action="store_true", help="do not print answers")
    parser.add_argument("--format", dest="output_format", choices=["csv", "json", "jsonl"])
    parser.add_argument("--concurrency", type=int, metavar="N", help="requests at once (8)")
    parser.add_argument("--rate-limit", type=float, metavar="N", help="requests per minute")
    parser.add_argument(
        "--rate-window", type=float, metavar="SECONDS", help=argparse.SUPPRESS
    )  # the "minute" of --rate-limit; for tests
    parser.add_argument("--stop-on-error", action="store_true", default=None)
    parser.add_argument("--batch-id", metavar="ID", help="id of a new run, or the run to resume")
    parser.add_argument("--resume", action="store_true", help="continue an unfinished run")
    parser.add_argument("--limit", type=int, metavar="N", help="first N rows of the input")
    parser.add_argument("-n", type=int, metavar="N", help="list: runs; show/logs: items")
    parser.add_argument("--no-log", action="store_true", default=None, help="no item log")
    parser.add_argument(
        "--expect-json",
        dest="schema",
        nargs="?",
        const=True,
        default=None,
        metavar="SCHEMA",
        help="answers must be JSON (matching the JSON Schema file, if given)",
    )
    parser.add_argument("--json-retries", type=int, metavar="N", help="re-asks for bad JSON (2)")
    parser.add_argument("--rows-per-request", type=int, metavar="N", help="pack N rows per call")
    parser.add_argument(
        "--pipeline", action="store_true", help="rows are chat lines (username, message)"
    )
    parser.add_argument("--force", action="store_true", help="re-ask rows answered before")
    parser.add_argument("--estimate-cost", action="store_true", help="estimate, then ask")
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask before starting")
    parser.add_argument("--timeout", type=float, dest="timeout_seconds", metavar="SECONDS")
    parser.add_argument(
        "--checkpoint",
        type=float,
        dest="checkpoint_seconds",
        metavar="SECONDS",
        help="rewrite the output this often during the run (30)",
    )
    parser.add_argument("--max-tokens", type=int, metavar="N")
    parser.add_argument("--temperature", type=float)
    parser.add_argument(
        "--progress-interval", type=float, metavar="SECONDS", help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--stop-grace", type=float, dest="stop_grace_seconds", help=argparse.SUPPRESS
    )  # seconds requests in flight may finish after a stop (5); for tests
    parser.add_argument("--status", dest="status_filter", choices=RUN_STATUSES, help="list: only")
    parser.add_argument("--json", action="store_true", help="list/status: print JSON")
    parser.add_argument("--wait", action="store_true", help="cancel: wait until it stopped")
    parser.add_argument("--failed", action="store_true", help="show: only failed items")
    parser.add_argument("--search", metavar="TEXT", help="logs: answers or inputs with TEXT")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
    )
    parser.set_defaults(batch_flags=_flags(parser))


def _flags(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each option's library name (its dest, a BatchOptions field) -> its long flag."""
    flags = dict(_NAMES)
    for action in parser._actions:
        long = [o for o in action.option_strings if o.startswith("--")]
        if long:
            flags.setdefault(action.dest, long[0])
    return flags


def _in_flags(exc: ConfigError, flags: dict[str, str]) -> ConfigError:
    """``exc`` with the library's option names replaced by the command line's flags."""

    def text(value: str) -> str:
        return _OPTION_REF.sub(lambda m: flags.get(m.group(1), m.group(0)), value)

    return ConfigError(
        [(flags.get(where, where), text(msg), text(fix)) for where, msg, fix in exc.problems]
    )


def _open_store(path: str) -> RunStore:
    """The run store at ``path`` (``--db``), or a usage error naming the flag."""
    try:
        return RunStore(path)
    except ConfigError as exc:
        fix = "give a file in an existing, writable directory (default ./batch.db)"
        raise ConfigError([("--db", msg, fix) for _, msg, _ in exc.problems]) from None


def run(args: argparse.Namespace) -> int:
    """Execute ``kryten-llm batch`` with parsed ``args``; returns the exit code."""
    from kryten_llm.logs import configure_logging

    configure_logging(args.log_level, "console")
    flags: dict[str, str] = getattr(args, "batch_flags", None) or dict(_NAMES)
    try:
        if args.target in ACTIONS:
            with _open_store(args.db) as store:
                return act(args, store)
        return _run_batch(args)
    except ConfigError as exc:
        print(_in_flags(exc, flags).report("kryten-llm batch: cannot start:"), file=sys.stderr)
        return EXIT_USAGE
    except InputError as exc:
        print(f"kryten-llm batch: cannot read the input: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RunExists as exc:
        print(
            f"kryten-llm batch: cannot start:\n  --batch-id: {exc}\n"
            "      fix: add --resume to continue it, or choose another id",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except RunNotFound as exc:
        print(f"kryten-llm batch: {exc} in {args.db} (see batch list)", file=sys.stderr)
        return EXIT_USAGE
    except KrytenLLMError as exc:
        print(f"kryten-llm batch: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _options(args: argparse.Namespace) -> tuple[BatchOptions, dict[str, Any], set[str]]:
    """The options given (by their BatchOptions field), the resumable overrides among them,
    and the names of those given (they win over the config's ``batch`` defaults)."""
    given: dict[str, Any] = {
        name: value
        for name, value in vars(args).items()
        if name in _FIELDS and value is not None and value is not False
    }
    given["input"] = args.target
    given["providers"] = tuple(args.providers or ())
    given["models"] = tuple(args.models or ())
    if args.schema is not None:  # --expect-json [SCHEMA]
        given["expect_json"] = True
        given["schema"] = args.schema if isinstance(args.schema, str) else None
    named = {k for k, v in given.items() if v not in (None, ())}
    overrides = {k: given[k] for k in RESUMABLE_OVERRIDES if given.get(k) is not None}
    values = {k: v for k, v in given.items() if v is not None}
    return BatchOptions(**values), overrides, named


def _run_batch(args: argparse.Namespace) -> int:
    if not args.target and not args.resume:
        raise ConfigError([("INPUT", "no input file given", "kryten-llm batch FILE [options]")])
    options, overrides, given = _options(args)
    with _open_store(options.db) as store:
        plan = make_plan(options, store=store, overrides=overrides, given=given)
        with output_lock(plan.output):  # before anything is sent
            plan = asyncio.run(discover(plan))
            if args.estimate_cost:
                for line in plan.estimate().lines():
                    print(line, file=sys.stderr)
                print(
                    f"  (known prices as of {PRICES_AS_OF}; batch.prices overrides)",
                    file=sys.stderr,
                )
                if not args.yes and not _confirm("start the batch? [y/N] "):
                    print("kryten-llm batch: not started", file=sys.stderr)
                    return EXIT_OK
            progress = Progress(interval=plan.options.progress_interval)
            # Startup's objects (imports, the plan) go to the permanent generation: a full
            # collection in the run then takes ~0.1 ms instead of ~30 ms, which would otherwise
            # hold up whichever request is in flight (and break the pacing the server sees).
            gc.freeze()
            try:
                result = asyncio.run(_execute(plan, store, progress))
            except KeyboardInterrupt:
                return EXIT_INTERRUPTED
    _report(result)
    if result.status in (RunStatus.PAUSED, RunStatus.CANCELLED):
        return EXIT_INTERRUPTED
    return EXIT_OK if result.ok else EXIT_FAILED


async def _execute(plan: BatchPlan, store: RunStore, progress: Progress) -> BatchResult:
    """Run the plan; SIGINT/SIGTERM pause it cleanly (a second SIGINT interrupts at once)."""
    loop = asyncio.get_running_loop()
    runners: list[BatchRunner] = []

    def stop(sig: signal.Signals) -> None:
        print(f"\nkryten-llm batch: stopping ({sig.name}); resumable", file=sys.stderr)
        for runner in runners:
            runner.request_stop(RunStatus.PAUSED)
        if sig == signal.SIGINT:
            loop.remove_signal_handler(signal.SIGINT)

    with on_stop_signals(stop):
        return await execute(plan, store, progress=progress, runner_hook=runners.append)


def _confirm(question: str) -> bool:
    print(question, end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def _report(result: BatchResult) -> None:
    for line in summary_lines(result.summary, elapsed=result.elapsed_seconds):
        print(line, file=sys.stderr)
    where = f", output {result.output}" if result.output else ""
    hint = ""
    if result.status in (RunStatus.PAUSED, RunStatus.CANCELLED, RunStatus.FAILED):
        hint = f" (continue with --resume --batch-id {result.batch_id})"
    print(
        f"batch {result.batch_id}: {result.status}, {result.completed} answered, "
        f"{result.failed} failed{where}{hint}",
        file=sys.stderr,
    )


def build_parser() -> argparse.ArgumentParser:
    """A stand-alone parser (``python -m kryten_llm.batch``), same arguments."""
    parser = argparse.ArgumentParser(prog="kryten-llm batch", description=__doc__.split("\n")[0])
    configure_parser(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m kryten_llm.batch``."""
    return run(build_parser().parse_args(argv))
