"""Shared fixtures: a real nats-server per test module, the kryten-py bridge stand-in, a running
bot service configured for tests, an HTTP session and a hand-driven clock.

Also the waits tests share: :func:`eventually` for a condition, :func:`settled` for "the bot has
dealt with everything it was sent", so that "nothing else happened" is asserted only after
something proves the bot got that far, never after a fixed sleep."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest
from nats.aio.client import Client as NATS

from kryten_llm.bus.settle import settle
from kryten_llm.config import Settings, load_settings
from kryten_llm.pipeline.stats import Stats
from kryten_llm.service import Service
from tests.bridge import FakeBridge
from tests.natsserver import NatsServer


@pytest.fixture(scope="module")
def nats_server() -> Iterator[NatsServer]:
    """A real nats-server on a free port of 127.0.0.1, JetStream on, for one test module."""
    server = NatsServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
async def bridge(nats_server: NatsServer) -> AsyncIterator[FakeBridge]:
    async with FakeBridge(nats_server.url) as fake:
        yield fake


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[NATS]:
    """A plain NATS client of the test's own on the module's server (watching, publishing)."""
    client = await nats.connect(nats_server.url)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """One aiohttp client session for the test, closed afterwards."""
    async with aiohttp.ClientSession() as client:
        yield client


class Clock:
    """A clock the test moves by hand: pass it where a component takes ``clock=``."""

    def __init__(self, now: float = 10_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


# Rate limits that never get in a test's way.
OPEN_LIMITS: dict[str, Any] = {
    "global_per_minute": 1000,
    "global_per_hour": 10000,
    "global_cooldown_seconds": 0,
    "user_per_hour": 1000,
    "user_cooldown_seconds": 0,
    "mention_cooldown_seconds": 0,
    "unsolicited_per_window": 1000,
}


def config_for(nats_url: str, log_dir: Path, **sections: Any) -> dict[str, Any]:
    """Test configuration data: fast pacing, generous limits, scripted echo provider, one bot
    alone (no cluster); ``sections`` are merged in, a level deep."""
    base: dict[str, Any] = {
        "nats": {"servers": [nats_url], "connect_timeout_seconds": 1},
        "channels": [{"domain": "cytu.be", "channel": "MyChannel"}],
        "bot": {"username": "CynthiaRothbot"},
        "send": {"min_gap_seconds": 0, "jitter_seconds": 0},
        "ratelimit": dict(OPEN_LIMITS),
        "filters": {"replay_grace_seconds": 0},
        "logging": {"response_log_dir": str(log_dir), "level": "DEBUG"},
        "service": {"heartbeat_interval_seconds": 30},
        "web": {"port": 0},
        "fallback": {"pool_dir": str(log_dir / "fallback")},
        # One bot per test: the module's nats-server outlives it, and shared limits kept in its
        # JetStream would carry one test's hits into the next. tests/test_cluster*.py opt in.
        "cluster": {"enabled": False},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return base


def settings_for(nats_url: str, log_dir: Path, **sections: Any) -> Settings:
    """:func:`config_for` as checked settings."""
    return load_settings(None, **config_for(nats_url, log_dir, **sections))


@contextlib.asynccontextmanager
async def running(service: Service, timeout: float = 10.0) -> AsyncIterator[Service]:
    """Run ``service`` in a task; stop it and check it exited cleanly afterwards."""
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    ready = asyncio.create_task(service.ready.wait())
    done, _ = await asyncio.wait({task, ready}, timeout=timeout, return_when="FIRST_COMPLETED")
    if ready not in done:
        ready.cancel()
        stop.set()
        await asyncio.wait_for(task, 5)
        raise RuntimeError("service did not become ready")
    try:
        yield service
    finally:
        print("service counters:", service.stats.snapshot())
        service.request_stop("test finished")
        stop.set()
        assert await asyncio.wait_for(task, 10) == 0


def write_json(path: Path, data: Any) -> Path:
    """``data`` as JSON in ``path`` (a config file...); returns the path."""
    path.write_text(json.dumps(data))
    return path


def read_log(directory: Path) -> list[dict[str, Any]]:
    """Every response-log record written in ``directory``, oldest file first."""
    return [
        json.loads(line)
        for path in sorted(directory.glob("responses-*.jsonl"))
        for line in path.read_text().splitlines()
    ]


async def eventually(predicate: Any, timeout: float = 10.0) -> None:
    """Wait until ``predicate()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def undecided(stats: Stats | Mapping[str, int]) -> int:
    """Messages that fired a trigger and have no decision yet (queued or being answered).

    Every triggered message ends in exactly one ``decision_*`` count: from intake (rate
    limited, paused, queue overflow) or from the responder (answered, dry run, failed...).
    ``decision_spam`` is counted before the trigger is, so it is not one of them.

    Args:
        stats: the service's counters, or their flat snapshot (a heartbeat's ``stats``).
    """
    flat = stats.snapshot() if isinstance(stats, Stats) else stats
    decided = sum(
        n for key, n in flat.items() if key.startswith("decision_") and key != "decision_spam"
    )
    return flat.get("triggered", 0) - decided


async def settled(
    service: Service,
    bridge: FakeBridge | None = None,
    *,
    chats: int | None = None,
    timeout: float = 10.0,
) -> None:
    """Wait until the bot has taken in ``chats`` chat messages and PMs and decided them all.

    Without ``chats``, wait only until every message taken in so far is decided.

    Count in ``chats`` the echo CyTube sends of each of the bot's own ``say`` commands. A
    channel's events are handled one at a time, and a message's ``chat`` and ``triggered``
    counts go up in the same step, so once both counts are reached and nothing is undecided,
    no message sent before can still produce a reply. The service's NATS connection is then
    settled (what it published has reached the server), then the ``bridge``'s (the server
    delivers to it before answering its ping), so its ``commands`` are complete.

    Raises:
        AssertionError: not settled in ``timeout`` seconds, or more chats than ``chats``.
    """
    stats = service.stats
    least = chats or 0
    await eventually(lambda: stats["chat"] >= least and undecided(stats) == 0, timeout)
    if chats is not None:
        assert stats["chat"] == chats, f"{stats['chat']} chat messages, expected {chats}"
    if service.nc is not None:
        await settle(service.nc)
    if bridge is not None:
        await bridge.flush()
