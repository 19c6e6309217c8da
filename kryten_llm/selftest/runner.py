"""``kryten-llm selftest``: start the whole system locally, run the scenarios, say what works.

:func:`run_selftest` starts the :class:`~kryten_llm.selftest.stack.Stack` in a scratch
folder, runs each scenario of :data:`~kryten_llm.selftest.scenarios.SCENARIOS` in turn and
prints one line per scenario (pass or fail, time, and the trace of ids through the parts that
handled it), then a summary. With ``keep_running`` the stack stays up, with the addresses
printed, until Ctrl+C. Exit 0 only when every scenario passed; 1 when one failed or the stack
did not start; 130 when interrupted. The scratch folder is removed after a clean pass and
kept (and named) otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import IO, Any

from kryten_llm.console import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, on_stop_signals
from kryten_llm.errors import SelftestError
from kryten_llm.selftest.httpprovider import Behaviour
from kryten_llm.selftest.scenario import Result, Scenario, run_scenario
from kryten_llm.selftest.scenarios import SCENARIOS
from kryten_llm.selftest.stack import Stack


def add_parser(subparsers: Any) -> None:
    """Add the ``selftest`` subcommand to the main CLI's subparsers."""
    parser = subparsers.add_parser(
        "selftest",
        help="start everything locally (NATS, bot, channel, providers) and check it works",
        description="Start an embedded nats-server, the bot on a scratch config, the "
        "simulated channel and scripted providers (one fails on purpose), run the "
        "scenarios and print one line each. Exit 0 only if all pass.",
    )
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="after the scenarios, leave the stack up (addresses printed) until Ctrl+C",
    )
    parser.add_argument(
        "--scratch",
        type=Path,
        metavar="DIR",
        help="write the config, logs and outputs there and keep them (default: a new "
        "temporary folder, removed after a clean pass)",
    )


def run(args: argparse.Namespace) -> int:
    """The ``selftest`` command: the exit code."""
    from kryten_llm.logs import configure_logging

    configure_logging("WARNING", "console")
    try:
        return asyncio.run(run_selftest(keep_running=args.keep_running, scratch=args.scratch))
    except KeyboardInterrupt:  # a second Ctrl+C while stopping
        return EXIT_INTERRUPTED
    except OSError as exc:  # the scratch folder cannot be made or written
        print(f"kryten-llm selftest: {exc}", file=sys.stderr)
        return EXIT_FAILED


async def run_selftest(
    *,
    keep_running: bool = False,
    scratch: Path | None = None,
    out: IO[str] | None = None,
    scenarios: Sequence[Scenario] = SCENARIOS,
    provider: Behaviour = Behaviour.FAIL,
    until: Callable[[], Awaitable[None]] | None = None,
) -> int:
    """Run the self-test; returns the exit code.

    Args:
        keep_running: leave the stack up after the scenarios until Ctrl+C/SIGTERM (or
            ``until``).
        scratch: the folder for the config, logs and outputs (kept); None: a temporary one.
        out: where the lines go (stdout by default).
        scenarios: which scenarios to run, in order.
        provider: how the scripted HTTP provider misbehaves (tests break it on purpose).
        until: with ``keep_running``, an awaitable factory that ends the wait (tests).
    """
    out = out or sys.stdout
    stopping = asyncio.Event()
    root = scratch if scratch is not None else Path(tempfile.mkdtemp(prefix="kryten-llm-selftest-"))
    root.mkdir(parents=True, exist_ok=True)
    stack = Stack(root.resolve(), behaviour=provider)
    started = time.monotonic()
    results: list[Result] = []
    code = EXIT_FAILED
    with on_stop_signals(lambda _: stopping.set()):
        try:
            _say(out, "kryten-llm selftest: starting nats-server, HTTP provider, bot, channel")
            start = asyncio.ensure_future(stack.start())
            if not await _finished(start, stopping):
                return EXIT_INTERRUPTED
            start.result()  # SelftestError: a part did not start
            _say(out, f"stack up in {time.monotonic() - started:.1f} s; scratch {root}")
            width = max((len(s.name) for s in scenarios), default=0)
            for scenario in scenarios:
                task = asyncio.ensure_future(run_scenario(scenario, stack))
                if not await _finished(task, stopping):
                    _say(out, f"interrupted during {scenario.name!r}")
                    return EXIT_INTERRUPTED
                results.append(task.result())
                _say(out, results[-1].line(width))
            passed = sum(r.passed for r in results)
            _say(out, f"{passed}/{len(results)} passed in {time.monotonic() - started:.1f} s")
            code = EXIT_OK if passed == len(results) else EXIT_FAILED
            if keep_running:
                _say(out, "\n".join(["stack left running; Ctrl+C stops it:", *stack.reach()]))
                await _finished(
                    asyncio.ensure_future(until() if until else stopping.wait()), stopping
                )
                _say(out, "stopping the bot, then nats-server")
        except SelftestError as exc:
            _say(out, f"FAIL  the stack did not start: {exc}")
        finally:
            bot_code = await stack.stop()
            if bot_code not in (None, EXIT_OK):
                _say(out, f"the bot exited with {bot_code} (log: {root / 'bot.log'})")
                code = EXIT_FAILED
            if scratch is None and code == EXIT_OK:
                shutil.rmtree(root, ignore_errors=True)
            elif scratch is None:
                _say(out, f"files kept in {root}")
    return code


async def _finished(task: asyncio.Future[Any], stopping: asyncio.Event) -> bool:
    """Wait for ``task``; False (and ``task`` cancelled) when a stop signal came first."""
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({task, stop}, return_when="FIRST_COMPLETED")
    finally:
        stop.cancel()
    if task.done():
        return True
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    return False


def _say(out: IO[str], line: str) -> None:
    print(line, file=out, flush=True)
