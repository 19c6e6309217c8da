"""Several bot processes from one config file, each in its own working directory.

This is how an operator runs several instances (``kryten-llm --config /etc/.../config.json``
from different directories, or on different machines): nothing else tells them apart. The
helpers read each instance's counters from the startup event it republishes on a discovery
poll (one per instance, told apart by ``instance_id``), and kill one with SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kryten.subject_builder import build_subject
from nats.aio.client import Client as NATS

from kryten_llm.bus.subjects import DISCOVERY_POLL, lifecycle
from tests.botproc import spawn_bot
from tests.conftest import undecided, write_json


async def mention(nc: NATS, channel: str, text: str, username: str = "alice") -> None:
    """A chatMsg in ``channel``, enveloped byte for byte as the bridge's json.dumps does."""
    body = {
        "event_name": "chatMsg",
        "payload": {"username": username, "msg": text, "meta": {}, "time": int(time.time() * 1000)},
        "channel": channel,
        "domain": "cytu.be",
        "timestamp": datetime.now(UTC).isoformat(),
        "correlation_id": str(uuid.uuid4()),
    }
    await nc.publish(build_subject("cytu.be", channel, "chatMsg"), json.dumps(body).encode())


def cluster_config(nats_urls: list[str], **sections: Any) -> dict[str, Any]:
    """One config every instance shares: generous limits, echo provider, no pacing."""
    config: dict[str, Any] = {
        "nats": {"servers": nats_urls, "connect_timeout_seconds": 1},
        "channels": [{"domain": "cytu.be", "channel": "MyChannel"}],
        "bot": {"username": "CynthiaRothbot"},
        "send": {"min_gap_seconds": 0, "jitter_seconds": 0},
        "ratelimit": {
            "global_per_minute": 100_000,
            "global_per_hour": 100_000,
            "global_cooldown_seconds": 0,
            "user_per_hour": 100_000,
            "user_cooldown_seconds": 0,
            "mention_cooldown_seconds": 0,
            "unsolicited_per_window": 100_000,
        },
        "spam": {"enabled": False},  # a hundred users asking five times each is the test
        "filters": {"replay_grace_seconds": 0},
        "logging": {"level": "INFO", "format": "json", "response_log_dir": "logs"},
        "service": {"heartbeat_interval_seconds": 30},
        "processing": {"queue_size": 1000, "workers": 4},
        "web": {"port": 0},
        "cluster": {"enabled": True},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


class Instances:
    """``count`` bot processes sharing ``config`` (written once to ``base/config.json``)."""

    def __init__(self, base: Path, config: dict[str, Any], count: int) -> None:
        self.base = base
        self.config_path = write_json(base / "config.json", config)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.dirs: list[Path] = []
        for _ in range(count):
            self.add()

    def add(self) -> int:
        """Start one more instance (``instance-<n>``, the next number); its index."""
        directory = self.base / f"instance-{len(self.dirs)}"
        directory.mkdir()
        self.dirs.append(directory)
        with (directory / "bot.log").open("wb") as out:
            self.processes.append(
                spawn_bot(self.config_path, cwd=directory, stdout=out, stderr=subprocess.STDOUT)
            )
        return len(self.dirs) - 1

    def kill(self, index: int) -> None:
        """SIGKILL one instance (no shutdown announcement, no lease given back)."""
        process = self.processes[index]
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def stop(self) -> list[int | None]:
        """SIGTERM every instance still running; their exit codes (None: killed before)."""
        codes: list[int | None] = []
        for process in self.processes:
            if process.poll() is not None:
                codes.append(None)
                continue
            process.send_signal(signal.SIGTERM)
            try:
                codes.append(process.wait(20))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
                codes.append(-9)
        return codes

    def log_lines(self, index: int) -> list[dict[str, Any]]:
        """The JSON log lines instance ``index`` wrote."""
        lines = []
        for line in (self.dirs[index] / "bot.log").read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
        return lines


async def startups(
    nc: NATS, expected: int, timeout: float = 5.0, *, service: str = "llm"
) -> dict[str, dict[str, Any]]:
    """The startup body of each instance, by instance id, after one discovery poll.

    Waits until ``expected`` instances answered (or ``timeout``): returns those that did.
    """
    found: dict[str, dict[str, Any]] = {}
    sub = await nc.subscribe(lifecycle(service, "startup"))
    try:
        await nc.publish(DISCOVERY_POLL, b"")
        deadline = time.monotonic() + timeout
        while len(found) < expected and time.monotonic() < deadline:
            try:
                msg = await sub.next_msg(max(deadline - time.monotonic(), 0.01))
            except Exception:  # nats TimeoutError: fewer answered
                break
            body = json.loads(msg.data)
            found[body.get("instance_id", "?")] = body
    finally:
        await sub.unsubscribe()
    return found


async def wait_instances(
    nc: NATS, count: int, timeout: float = 60.0, *, service: str = "llm"
) -> dict[str, Any]:
    """Wait until ``count`` instances answer discovery and each sees ``count`` peers."""
    deadline = time.monotonic() + timeout
    while True:
        found = await startups(nc, count, 2.0, service=service)
        peers = [(b["metadata"].get("cluster") or {}).get("peers") for b in found.values()]
        if len(found) == count and all(p == count for p in peers):
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(found)} instances ready, peers seen: {peers}")
        await asyncio.sleep(0.2)


async def wait_decided(
    nc: NATS,
    count: int,
    triggered: int,
    timeout: float = 60.0,
    *,
    service: str = "llm",
    answered: int | None = None,
) -> dict[str, dict[str, int]]:
    """Wait until each of ``count`` instances took in ``triggered`` messages (or, with
    ``answered``, until they answered that many together) and decided all; returns each
    instance's counters."""
    deadline = time.monotonic() + timeout
    while True:
        found = await startups(nc, count, 2.0, service=service)
        stats = {name: body["metadata"]["stats"] for name, body in found.items()}
        took_in = all(s.get("triggered", 0) >= triggered for s in stats.values())
        if answered is not None:  # an instance may miss events (its NATS node was lost)
            took_in = sum(s.get("decision_answered", 0) for s in stats.values()) >= answered
        if len(stats) == count and took_in and all(undecided(s) == 0 for s in stats.values()):
            return stats
        if time.monotonic() > deadline:
            raise TimeoutError(f"not decided in time: {stats}")
        await asyncio.sleep(0.1)
