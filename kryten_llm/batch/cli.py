"""``kryten-llm batch``: the command line of batch mode.

    kryten-llm batch INPUT [options]        run a batch (or --resume one)
    kryten-llm batch list [--status S]      recent runs
    kryten-llm batch status ID              totals, completed, failed, rate, ETA
    kryten-llm batch cancel ID              stop a run (in any process) cleanly; resumable

The first positional argument is the action when it is ``list``, ``status`` or ``cancel``,
otherwise the input file (a file really called ``list`` can be given as ``./list``).
:func:`add_parser` plugs the subcommand into the main parser; :func:`run` executes it. This is
the boundary where errors become one line saying what to fix, and an exit code (from
:mod:`kryten_llm.console`): 0 all rows answered, 1 some rows failed (or the run stopped on
error), 2 usage or configuration error, 130 interrupted or cancelled (the run is resumable).

The library names options by their :class:`~kryten_llm.batch.options.BatchOptions` field
(``batch_id``, "the resume option") and the store by its path; :func:`_in_flags` puts the
command line's flags in their place.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import re
import signal
import sys
import time
from typing import Any

from kryten_llm.batch.api import execute
from kryten_llm.batch.options import RESUMABLE_OVERRIDES, BatchOptions
from kryten_llm.batch.plan import BatchPlan, make_plan
from kryten_llm.batch.progress import Progress, duration, summary_lines
from kryten_llm.batch.runner import BatchResult, BatchRunner
from kryten_llm.batch.store import RunStore, process_alive
from kryten_llm.batch.storetypes import RUN_STATUSES, RunStatus
from kryten_llm.console import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    on_stop_signals,
    table,
)
from kryten_llm.errors import (
    ConfigError,
    InputError,
    KrytenLLMError,
    RunExists,
    RunNotFound,
)

ACTIONS = ("list", "status", "cancel")
# Library names that are not an argument's dest, and the flag or argument they are on the CLI.
_NAMES = {"input": "INPUT", "schema": "--expect-json", "db": "--db"}
_OPTION_REF = re.compile(r"\bthe (\w+) option\b")


def add_parser(subparsers: Any) -> None:
    """Add the ``batch`` subcommand to ``subparsers`` (from ``add_subparsers``)."""
    parser = subparsers.add_parser(
        "batch",
        help="answer many prompts from a file (resumable), or list/status/cancel runs",
        description="Answer many prompts from a .txt/.csv/.json/.jsonl/.xlsx file through "
        "the configured providers. Actions: list, status ID, cancel ID.",
    )
    configure_parser(parser)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add every batch argument to ``parser``."""
    parser.add_argument(
        "target", nargs="?", metavar="INPUT|ACTION", help="input file, or list / status / cancel"
    )
    parser.add_argument("run_id", nargs="?", metavar="ID", help="the batch, for status/cancel")
    parser.add_argument("--config", metavar="FILE", help="kryten-llm config (providers)")
    parser.add_argument(
        "--db", default="batch.db", metavar="FILE", help="run store (default ./batch.db)"
    )
    parser.add_argument("--input-format", choices=["txt", "csv", "json", "jsonl", "xlsx"])
    parser.add_argument("--template", help='prompt template over columns, e.g. "Sum up {text}"')
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
        help="model name (one for all providers, or one per --provider)",
    )
    parser.add_argument("--output", "-o", metavar="FILE", help="results file (.csv/.json/.jsonl)")
    parser.add_argument("--format", dest="output_format", choices=["csv", "json", "jsonl"])
    parser.add_argument("--concurrency", type=int, metavar="N", help="requests at once (8)")
    parser.add_argument("--rate-limit", type=float, metavar="N", help="requests per minute")
    parser.add_argument(
        "--rate-window", type=float, metavar="SECONDS", help=argparse.SUPPRESS
    )  # the "minute" of --rate-limit; for tests
    parser.add_argument("--stop-on-error", action="store_true", default=None)
    parser.add_argument("--batch-id", metavar="ID", help="id of a new run, or the run to resume")
    parser.add_argument("--resume", action="store_true", help="continue an unfinished run")
    parser.add_argument("--limit", type=int, metavar="N", help="first N rows (list: N runs)")
    parser.add_argument("--no-log", action="store_true", default=None, help="no item log")
    parser.add_argument(
        "--expect-json",
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
            return _action(args)
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


def _options(args: argparse.Namespace) -> tuple[BatchOptions, dict[str, Any]]:
    given: dict[str, Any] = {
        "input": args.target,
        "input_format": args.input_format,
        "template": args.template,
        "system": args.system,
        "providers": tuple(args.providers or ()),
        "models": tuple(args.models or ()),
        "output": args.output,
        "output_format": args.output_format,
        "concurrency": args.concurrency,
        "rate_limit": args.rate_limit,
        "rate_window": args.rate_window,
        "stop_on_error": args.stop_on_error,
        "batch_id": args.batch_id,
        "resume": args.resume,
        "limit": args.limit,
        "no_log": args.no_log,
        "expect_json": args.expect_json is not None,
        "schema": args.expect_json if isinstance(args.expect_json, str) else None,
        "json_retries": args.json_retries,
        "rows_per_request": args.rows_per_request,
        "pipeline": args.pipeline,
        "force": args.force,
        "config": args.config,
        "db": args.db,
        "timeout_seconds": args.timeout_seconds,
        "checkpoint_seconds": args.checkpoint_seconds,
        "progress_interval": args.progress_interval,
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "stop_grace_seconds": args.stop_grace_seconds,
    }
    overrides = {k: given[k] for k in RESUMABLE_OVERRIDES if given.get(k) is not None}
    return BatchOptions(**{k: v for k, v in given.items() if v is not None}), overrides


def _run_batch(args: argparse.Namespace) -> int:
    if not args.target and not args.resume:
        raise ConfigError([("INPUT", "no input file given", "kryten-llm batch FILE [options]")])
    options, overrides = _options(args)
    with _open_store(options.db) as store:
        plan = make_plan(options, store=store, overrides=overrides)
        if args.estimate_cost:
            for line in plan.estimate().lines():
                print(line, file=sys.stderr)
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


def _action(args: argparse.Namespace) -> int:
    with _open_store(args.db) as store:
        if args.target == "list":
            runs = store.list_runs(status=args.status_filter, limit=args.limit or 20)
            if args.json:
                print(json.dumps([r.as_dict() for r in runs], indent=2))
                return EXIT_OK
            rows = [("id", "status", "created", "done", "failed", "total", "model", "input")]
            for r in runs:
                rows.append(
                    (
                        r.id,
                        r.status,
                        r.created_at,
                        str(r.completed_prompts),
                        str(r.failed_prompts),
                        "?" if r.total_prompts is None else str(r.total_prompts),
                        r.model,
                        r.input_file or "-",
                    )
                )
            for line in table(rows):
                print(line)
            return EXIT_OK
        if not args.run_id:
            raise ConfigError([("ID", f"batch {args.target} needs a batch id", "see batch list")])
        info = store.run(args.run_id)
        if args.target == "status":
            data = info.as_dict() | {"summary": [s.as_dict() for s in store.summary(info.id)]}
            if args.json:
                print(json.dumps(data, indent=2))
                return EXIT_OK
            print(f"batch {info.id}: {info.status}")
            print(f"  input:     {info.input_file or '-'} -> {info.output_file or '-'}")
            print(f"  models:    {info.model}")
            total = "?" if info.total_prompts is None else info.total_prompts
            print(f"  total:     {total}")
            print(f"  completed: {info.completed_prompts}")
            print(f"  failed:    {info.failed_prompts}")
            print(f"  rate:      {info.rate_per_second:.1f}/s")
            print(f"  ETA:       {duration(info.eta_seconds)}")
            return EXIT_OK
        return _cancel(store, info.id, wait=args.wait)


def _cancel(store: RunStore, run_id: str, *, wait: bool) -> int:
    info = store.run(run_id)
    if info.status in (RunStatus.COMPLETED, RunStatus.CANCELLED):
        print(f"batch {run_id} is already {info.status}", file=sys.stderr)
        return EXIT_FAILED
    alive = process_alive(info.pid)
    if info.status in (RunStatus.RUNNING, RunStatus.CANCELLING) and alive:
        store.request_cancel(run_id)
        print(f"batch {run_id}: cancelling (the run stops within a second)", file=sys.stderr)
        if wait:
            deadline = time.monotonic() + 60
            while store.status_of(run_id) is RunStatus.CANCELLING and time.monotonic() < deadline:
                time.sleep(0.1)
            print(f"batch {run_id}: {store.status_of(run_id)}", file=sys.stderr)
        return EXIT_OK
    # Paused, failed, or left 'running' by a process that no longer exists.
    store.cancel(run_id)
    print(f"batch {run_id}: cancelled", file=sys.stderr)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """A stand-alone parser (``python -m kryten_llm.batch``), same arguments."""
    parser = argparse.ArgumentParser(prog="kryten-llm batch", description=__doc__.split("\n")[0])
    configure_parser(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m kryten_llm.batch``."""
    return run(build_parser().parse_args(argv))
