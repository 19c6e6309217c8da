"""The bot as a real process: signals, exit codes, and NATS being unreachable."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import nats
import pytest

from kryten_llm.bus.settle import settle
from tests.botproc import spawn_bot
from tests.conftest import eventually, write_json
from tests.natsserver import NatsServer, free_port

pytestmark = pytest.mark.nats


def write_config(path: Path, nats_url: str, log_dir: Path) -> Path:
    config = {
        "nats": {"servers": [nats_url], "connect_timeout_seconds": 1},
        "channels": [{"domain": "cytu.be", "channel": "MyChannel"}],
        "logging": {"response_log_dir": str(log_dir), "format": "json"},
    }
    return write_json(path, config)


def finish(bot: subprocess.Popen[bytes]) -> str:
    """Make sure the bot is gone and its pipe closed; returns what it logged."""
    if bot.poll() is None:
        bot.kill()
    _, err = bot.communicate(timeout=15)
    return err.decode(errors="replace")


async def test_sigterm_publishes_shutdown_and_exits_zero(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """SIGTERM: the bot announces shutdown on NATS and exits 0 well within 10 s."""
    nc = await nats.connect(nats_server.url)
    events: list[tuple[str, dict[str, Any]]] = []

    async def on_lifecycle(msg: Any) -> None:
        events.append((msg.subject, json.loads(msg.data)))

    await nc.subscribe("kryten.lifecycle.llm.*", cb=on_lifecycle)
    await settle(nc)
    bot = spawn_bot(write_config(tmp_path / "c.json", nats_server.url, tmp_path))
    try:
        deadline = time.monotonic() + 20
        while not any(s.endswith(".startup") for s, _ in events):
            assert time.monotonic() < deadline, "no startup event"
            assert bot.poll() is None, finish(bot)
            await asyncio.sleep(0.05)
        signalled = time.monotonic()
        bot.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(bot.wait, 15)
        elapsed = time.monotonic() - signalled
        # The bot announced its shutdown before exiting: once that announcement is here and
        # our connection has made a round trip since, a second one would be here too.
        await eventually(lambda: any(s.endswith(".shutdown") for s, _ in events))
        await settle(nc)
    finally:
        finish(bot)
        await nc.close()
    assert code == 0
    assert elapsed < 10
    shutdown = [body for subject, body in events if subject.endswith(".shutdown")]
    assert len(shutdown) == 1
    assert shutdown[0]["reason"] == "SIGTERM"


async def test_unreachable_nats_is_retried_and_sigterm_still_exits_zero(
    tmp_path: Path,
) -> None:
    """With no NATS server the bot logs its retries, and SIGTERM ends it at once with 0."""
    dead = f"nats://127.0.0.1:{free_port()}"
    bot = spawn_bot(write_config(tmp_path / "c.json", dead, tmp_path))
    try:
        await asyncio.sleep(2.5)
        assert bot.poll() is None
        signalled = time.monotonic()
        bot.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(bot.wait, 15)
        elapsed = time.monotonic() - signalled
    finally:
        err = finish(bot)
    assert code == 0
    assert elapsed < 10
    retries = [json.loads(line) for line in err.splitlines() if "nats_unreachable" in line]
    assert len(retries) >= 2
    assert retries[0]["servers"] == [dead]
    assert retries[1]["attempt"] == 2


async def test_the_bot_connects_once_nats_comes_up(tmp_path: Path) -> None:
    """Started before NATS, the bot keeps retrying and announces itself when NATS appears."""
    server = NatsServer()
    bot = spawn_bot(write_config(tmp_path / "c.json", server.url, tmp_path))
    try:
        await asyncio.sleep(1.0)
        server.start()
        nc = await nats.connect(server.url)
        seen: list[bytes] = []

        async def on_startup(msg: Any) -> None:
            seen.append(msg.data)

        await nc.subscribe("kryten.lifecycle.llm.startup", cb=on_startup)
        await settle(nc)
        deadline = time.monotonic() + 20
        while not seen:
            assert time.monotonic() < deadline, "bot never announced itself"
            # A poll also catches the case where startup went out before we subscribed.
            await nc.publish("kryten.service.discovery.poll", b"")
            await asyncio.sleep(0.2)
        await nc.close()
        bot.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(bot.wait, 15) == 0
    finally:
        finish(bot)
        server.close()
