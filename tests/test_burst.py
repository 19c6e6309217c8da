"""A burst of chat published as fast as nats-py can is taken in whole: no slow consumer.

nats-server cuts off a client whose socket backlog passes ``max_pending`` (everything queued
for it is lost). The bot must keep reading its socket while it works through a burst, so the
backlog waits in the bot, not in the server. The server here allows only 4 MB (64 MB by
default) so that a bounded burst shows it: with the callback running line after line without
yielding, 200,000 lines lost tens of thousands and the server counted a slow consumer.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from kryten_llm.bus.connection import COLLECT_EVERY
from kryten_llm.service import Service
from tests.conftest import running, settings_for
from tests.natsserver import ConfiguredNatsServer

pytestmark = pytest.mark.slow

LINES = 200_000

# A second process publishes, so the burst does not wait for the bot's event loop.
PUBLISHER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    import nats

    def chat(username, text):
        return json.dumps({
            "event_name": "chatMsg",
            "payload": {
                "username": username, "msg": text, "meta": {}, "time": int(time.time() * 1000)
            },
            "channel": "MyChannel", "domain": "cytu.be",
            "timestamp": "2026-11-30T12:00:00+00:00", "correlation_id": "c",
        }).encode()

    async def main(url, count):
        nc = await nats.connect(url, pending_size=64 * 1024 * 1024)
        subject = "kryten.events.cytube.mychannel.chatmsg"
        lines = [chat(f"user{i}", f"ordinary line number {i} about the movie") for i in range(50)]
        for i in range(count - 1):
            await nc.publish(subject, lines[i % 50])
        await nc.publish(subject, chat("asker", "CynthiaRothbot, are you still with us?"))
        await nc.flush(60)
        await nc.close()

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


@pytest.fixture
def small_pending_server() -> Iterator[ConfiguredNatsServer]:
    server = ConfiguredNatsServer(config="max_pending: 4MB")
    server.start()
    try:
        yield server
    finally:
        server.close()


async def test_a_burst_faster_than_the_bot_loses_no_line(
    small_pending_server: ConfiguredNatsServer, tmp_path: Path
) -> None:
    """Every line of the burst is counted, the server cut no one off, the mention is answered."""
    server = small_pending_server
    settings = settings_for(
        server.url, tmp_path, logging={"response_log_dir": str(tmp_path), "level": "WARNING"}
    )
    service = Service(settings)
    observer = await nats.connect(server.url)
    try:
        says = await observer.subscribe("kryten.robot.command")
        await observer.flush()
        async with running(service):
            publisher = await asyncio.create_subprocess_exec(
                sys.executable, "-c", PUBLISHER, server.url, str(LINES)
            )
            assert await asyncio.wait_for(publisher.wait(), 60) == 0
            say = await says.next_msg(60)
            assert json.loads(say.data)["command"] == "say"
            assert service.stats["events"] == LINES
        assert server.varz()["slow_consumers"] == 0
    finally:
        await observer.close()


async def test_the_service_raises_the_collectors_first_threshold_and_never_lowers_it(
    small_pending_server: ConfiguredNatsServer, tmp_path: Path
) -> None:
    """A burst's backlog is not walked by the collector every 700 lines; a higher first
    threshold (set by an operator) and the older generations' thresholds are kept."""
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        async with running(Service(settings_for(small_pending_server.url, tmp_path))):
            assert gc.get_threshold() == (COLLECT_EVERY, 10, 10)
        gc.set_threshold(COLLECT_EVERY * 2, 5, 7)
        async with running(Service(settings_for(small_pending_server.url, tmp_path))):
            assert gc.get_threshold() == (COLLECT_EVERY * 2, 5, 7)
    finally:
        gc.set_threshold(*before)
