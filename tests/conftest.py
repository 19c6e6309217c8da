"""Shared fixtures: a real nats-server per test module, the kryten-py bridge stand-in, and a
running bot service configured for tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from kryten_llm.config import Settings, load_settings
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


def settings_for(nats_url: str, log_dir: Path, **sections: Any) -> Settings:
    """Test settings: fast pacing, generous limits, scripted echo provider, given overrides."""
    base: dict[str, Any] = {
        "nats": {"servers": [nats_url], "connect_timeout_seconds": 1},
        "channels": [{"domain": "cytu.be", "channel": "MyChannel"}],
        "bot": {"username": "CynthiaRothbot"},
        "send": {"min_gap_seconds": 0, "jitter_seconds": 0},
        "ratelimit": {
            "global_per_minute": 1000,
            "global_per_hour": 10000,
            "global_cooldown_seconds": 0,
            "user_per_hour": 1000,
            "user_cooldown_seconds": 0,
            "mention_cooldown_seconds": 0,
            "unsolicited_per_window": 1000,
        },
        "filters": {"replay_grace_seconds": 0},
        "logging": {"response_log_dir": str(log_dir), "level": "DEBUG"},
        "service": {"heartbeat_interval_seconds": 30},
        "web": {"port": 0},
        "fallback": {"pool_dir": str(log_dir / "fallback")},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return load_settings(None, **base)


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
