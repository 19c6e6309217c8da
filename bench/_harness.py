"""Shared pieces of the benchmarks: a nats-server, the bot as a real process, its counters.

Every benchmark runs the bot exactly as an operator would (``python -m kryten_llm --config``)
against a real nats-server on 127.0.0.1, and reads the bot's own counters from the startup
event it republishes on each discovery poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client as NATS

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.botproc import bot_env
from tests.natsserver import NatsServer

__all__ = ["NatsServer"]


CODE = Path(os.environ.get("PYTHONPATH", "").split(os.pathsep)[0] or ROOT).resolve()
"""The checkout whose bot is measured: this one, or the first ``PYTHONPATH`` entry (a "before"
run: ``PYTHONPATH=<worktree of an old commit> python bench/bench_x.py``). Bots are started
with it as their working directory too: ``python -m`` puts the working directory first on
``sys.path``, so started anywhere inside this checkout they would run this checkout's code."""

PYCACHE = Path(tempfile.gettempdir()) / f"kryten-llm-bench-pycache-{os.getuid()}"
"""Where measured processes keep their compiled bytecode, as an installed package has it (pip
compiles at install): even where the environment sets ``PYTHONDONTWRITEBYTECODE``, a bot started
here does not compile its sources anew, which costs ~30 ms of its start and ~0.8 MiB of RSS."""


def child_env() -> dict[str, str]:
    """The environment of a measured process: no ``KRYTEN_LLM_`` settings, ``CODE`` importable,
    bytecode kept in :data:`PYCACHE`."""
    env = bot_env({"PYTHONPATH": str(CODE), "PYTHONPYCACHEPREFIX": str(PYCACHE)})
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


CHANNEL = "MyChannel"
SUBJECT = "kryten.events.cytube.mychannel.chatmsg"


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def bench_config(nats_url: str, log_dir: Path, **sections: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "nats": {"servers": [nats_url]},
        "channels": [{"domain": "cytu.be", "channel": CHANNEL}],
        "llm": {
            "providers": {"instant": {"type": "scripted"}},  # echo: a different reply each time
            "default_provider": "instant",
        },
        "ratelimit": {
            "global_per_minute": 1_000_000,
            "global_per_hour": 1_000_000,
            "global_cooldown_seconds": 0,
            "user_per_hour": 1_000_000,
            "user_cooldown_seconds": 0,
            "mention_cooldown_seconds": 0,
        },
        "send": {"min_gap_seconds": 0, "jitter_seconds": 0},
        # Thousands of questions a second from a few hundred users is a flood by design here.
        "spam": {"enabled": False},
        "filters": {"replay_grace_seconds": 0},
        "logging": {"level": "WARNING", "format": "json", "response_log_dir": str(log_dir)},
        "service": {"heartbeat_interval_seconds": 300},
    }
    config.update(sections)
    return config


class Bot:
    """The bot in its own process."""

    def __init__(self, config: dict[str, Any], *, log_path: Path | None = None) -> None:
        """Start it; its output goes to ``log_path`` (both streams) or nowhere."""
        self._dir = tempfile.TemporaryDirectory(prefix="kryten-llm-bench-")
        path = self.config_path = Path(self._dir.name) / "config.json"
        path.write_text(json.dumps(config))
        env = child_env()
        with contextlib.ExitStack() as files:
            out = files.enter_context(log_path.open("wb")) if log_path else subprocess.DEVNULL
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kryten_llm", "--config", str(path)],
                stdout=out,
                stderr=subprocess.STDOUT if log_path else subprocess.DEVNULL,
                env=env,
                cwd=CODE,
            )

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(20)
        self._dir.cleanup()
        return code


async def stats(nc: NATS, timeout: float = 5.0) -> dict[str, int]:
    """The bot's counters, from the startup event it republishes on a discovery poll."""
    sub = await nc.subscribe("kryten.lifecycle.llm.startup")
    try:
        await nc.publish("kryten.service.discovery.poll", b"")
        msg = await sub.next_msg(timeout)
        result: dict[str, int] = json.loads(msg.data)["metadata"]["stats"]
        return result
    finally:
        await sub.unsubscribe()


async def wait_ready(nc: NATS, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            await stats(nc, 0.5)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def wait_count(nc: NATS, key: str, target: int, timeout: float = 300.0) -> None:
    """Poll the bot's counters until ``key`` reaches ``target`` (a busy bot answers late)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if (await stats(nc, 10.0)).get(key, 0) >= target:
                return
        except nats.errors.TimeoutError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{key} did not reach {target}")
        await asyncio.sleep(0.05)


def chat_bytes(username: str, text: str) -> bytes:
    """One chatMsg envelope, byte for byte as the bridge's json.dumps makes it."""
    return json.dumps(
        {
            "event_name": "chatMsg",
            "payload": {
                "username": username,
                "msg": text,
                "meta": {},
                "time": int(time.time() * 1000),
            },
            "channel": CHANNEL,
            "domain": "cytu.be",
            "timestamp": datetime.now(UTC).isoformat(),
            "correlation_id": str(uuid.uuid4()),
        }
    ).encode()


async def connect(url: str) -> NATS:
    return await nats.connect(url, pending_size=64 * 1024 * 1024)


LINES = [
    "lol this movie is so bad it is good",
    "anyone else hear that weird noise at 12:30?",
    "brb getting more coffee",
    "the acting in this scene &lt;3",
    "who directed this again",
    "...lol",
    "this soundtrack slaps",
    "did the camera guy fall asleep",
]
_TICKS = os.sysconf("SC_CLK_TCK")


def chat_lines(count: int) -> Iterator[bytes]:
    """``count`` ordinary chat lines as the bridge sends them (50 users, the texts above), each
    with its own CyTube ``time``, so that no line repeats another: a repeated line is dropped
    early by the bot's duplicate filter, which an ordinary line is not (before 2026-11-30
    (ingest) the benchmarks cycled 1,000 lines, and measured that cheaper path)."""
    heads, tails = [], []
    for i in range(1000):
        head, key, rest = chat_bytes(f"user{i % 50}", LINES[i % len(LINES)]).partition(b'"time": ')
        heads.append(head + key)
        tails.append(rest.lstrip(b"0123456789"))
    start = int(time.time() * 1000)
    for i in range(count):
        yield heads[i % 1000] + str(start + i).encode() + tails[i % 1000]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank)."""
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]
