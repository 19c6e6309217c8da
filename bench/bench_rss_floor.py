"""(c) Memory floor: what the bot's dependencies cost in RSS before the bot holds any state.

Issue 18 asks for an idle RSS of at most 45 MiB. This script shows where that is decided: each
step imports one more layer in a fresh interpreter (the same `python` the bot runs on) and
prints the RSS (VmRSS, MiB) after it, cumulatively, in a bare client's order (the bot itself
imports aiohttp only once it listens, ``bus/natsload.py``: the total is the same). A bare
nats-py client pays the first three rows; the bot's core dependencies (aiohttp's web server for
the dashboard, structlog, pydantic, pydantic-settings) come on top of that before any of the
bot's own modules. Compare the last row with the idle figure of `bench_memory.py`.

    python bench/bench_rss_floor.py
"""

from __future__ import annotations

import subprocess
import sys

from _harness import CODE, child_env, machine

# (label, statement): each row runs every statement up to and including its own.
STEPS: list[tuple[str, str]] = [
    ("interpreter", "pass"),
    ("asyncio (with ssl)", "import asyncio"),
    ("nats-py (imports aiohttp's client): the bare client's floor", "import nats"),
    ("aiohttp.web (the dashboard)", "import aiohttp.web"),
    ("structlog", "import structlog"),
    ("pydantic (BaseModel)", "from pydantic import BaseModel"),
    ("pydantic-settings", "import pydantic_settings"),
    (
        "kryten_llm.config, settings loaded",
        "from kryten_llm.config import load_settings; load_settings()",
    ),
    ("the service (both halves imported)", "import kryten_llm.service, kryten_llm.bot.assembly"),
    ("prometheus_client (/metrics)", "import prometheus_client"),
    (
        "a full collection, then malloc_trim (freed heap given back)",
        "import ctypes, gc; gc.collect(); ctypes.CDLL('libc.so.6').malloc_trim(0)",
    ),
]

_PROBE = """
import sys
for statement in sys.argv[1:]:
    exec(statement)
for line in open('/proc/self/status'):
    if line.startswith('VmRSS:'):
        print(int(line.split()[1]) / 1024)
"""


def rss_after(statements: list[str]) -> float:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, *statements],
        capture_output=True,
        text=True,
        check=True,
        cwd=CODE,
        env=child_env(),  # from bytecode, as installed: compiling costs RSS of its own
    )
    return float(out.stdout.strip())


def main() -> None:
    print(f"machine: {machine()}")
    print(f"{'after':<62} {'RSS MiB':>8} {'+':>6}")
    done: list[str] = []
    before = 0.0
    for label, statement in STEPS:
        done.append(statement)
        # the median of three fresh interpreters: page faults vary a little between runs
        figures = sorted(rss_after(done) for _ in range(3))
        now = figures[1]
        print(f"{label:<62} {now:8.1f} {now - before:+6.1f}")
        before = now


if __name__ == "__main__":
    main()
