"""Liveness: no task of the bot ends silently, and /health says when the bot cannot answer."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from kryten_llm.bot.supervisor import Supervisor
from kryten_llm.ops.health import HealthInputs, Liveness, assess
from kryten_llm.service import Service
from tests.bridge import FakeBridge
from tests.conftest import Clock, eventually, running, settings_for
from tests.natsserver import NatsServer
from tests.openai_server import ScriptedOpenAIServer, drip, hang, reply


def verdict(live: Liveness, **changes: Any) -> dict[str, Any]:
    inputs = HealthInputs(
        running=True,
        nats_connected=True,
        channel_ages={"MyChannel": 1.0},
        providers={"a": {"state": "closed"}},
        chain=["a"],
        queue_depth=0,
        queue_capacity=32,
        uptime_seconds=60.0,
        liveness=live,
        **changes,
    )
    return assess(inputs, stale_after_seconds=900, stall_after_seconds=30)


def test_watchdog_states_from_liveness() -> None:
    """Each liveness signal leads to the state it must: the watchdog's truth table."""
    ok = Liveness(workers=2, workers_alive=2, queue_stalled_seconds=0.0)
    assert verdict(ok)["status"] == "healthy"
    dead = verdict(Liveness(workers=2, workers_alive=0, queue_stalled_seconds=0.0))
    assert (dead["status"], dead["reasons"]) == ("failing", ["no reply worker is running"])
    half = verdict(Liveness(workers=2, workers_alive=1, queue_stalled_seconds=0.0))
    assert half["status"] == "degraded"
    stuck = verdict(Liveness(workers=2, workers_alive=2, queue_stalled_seconds=31.0))
    assert stuck["status"] == "failing"
    assert stuck["reasons"] == ["reply queue has not moved for 31 s"]
    moving = verdict(Liveness(2, 2, 0.0, send_paused_seconds={"MyChannel": 0.0}))
    assert moving["status"] == "healthy"
    cooled = verdict(Liveness(2, 2, 0.0, send_paused_seconds={"MyChannel": 20.0, "Other": 0.0}))
    assert cooled["status"] == "degraded"
    muted = verdict(Liveness(2, 2, 0.0, send_paused_seconds={"MyChannel": 59.0, "Other": 45.0}))
    assert muted["status"] == "failing"
    assert "sending is paused in every channel" in muted["reasons"]
    assert muted["components"]["workers"]["send_paused_seconds"] == {
        "MyChannel": 59.0,
        "Other": 45.0,
    }


async def test_a_task_that_dies_is_restarted_and_one_that_keeps_dying_is_given_up() -> None:
    runs: list[str] = []
    gave_up: list[str] = []

    async def flaky() -> None:
        runs.append("flaky")
        if len(runs) < 3:
            raise RuntimeError("boom")
        await asyncio.Event().wait()

    supervisor = Supervisor(gave_up.append, max_restarts=5)
    supervisor.spawn("worker-0", flaky)
    await eventually(lambda: len(runs) == 3 and supervisor.alive("worker") == 1)
    assert supervisor.restarts == 2

    async def doomed() -> None:
        raise RuntimeError("always")

    clock = Clock()
    hopeless = Supervisor(gave_up.append, max_restarts=2, clock=clock)
    hopeless.spawn("doomed", doomed)
    await eventually(lambda: len(gave_up) == 1)
    assert "task doomed died 3 times" in gave_up[0]
    await supervisor.stop()
    await supervisor.stop()  # idempotent
    assert supervisor.alive() == 0
    await hopeless.stop()


async def test_a_killed_reply_worker_is_replaced_and_the_bot_still_answers(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path
) -> None:
    settings = settings_for(nats_server.url, tmp_path, processing={"workers": 1})
    async with running(Service(settings)) as service:
        worker = next(t for t in asyncio.all_tasks() if t.get_name() == "reply-worker-0")
        worker.cancel()
        await eventually(lambda: service.liveness() is not None and worker.done())
        await eventually(lambda: (service.liveness() or Liveness(1, 0, 0)).task_restarts == 1)
        await bridge.chat("alice", "cynthia, are you still there?")
        await bridge.wait_for_commands(1)
        assert (service.liveness() or Liveness(1, 0, 0)).workers_alive == 1


async def test_mentions_waiting_behind_a_slow_model_are_no_stall(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path
) -> None:
    """One worker busy with a slow (but within-deadline) model while a second mention waits
    longer than ``stall_after_seconds``: a working bot, so /health never says failing."""
    slow = drip(chunks=3, interval=1.0, text="slow")
    async with ScriptedOpenAIServer(slow, reply("fast")) as llm:
        settings = settings_for(
            nats_server.url,
            tmp_path,
            processing={"workers": 1},
            web={"port": 0, "stall_after_seconds": 1},
            llm={
                "default_provider": "main",
                "providers": {"main": {"type": "openai", "base_url": llm.base_url}},
            },
        )
        async with running(Service(settings)) as service:
            assert service.surface is not None
            await bridge.chat("alice", "cynthia, first question")
            await eventually(lambda: service.queue_depth == 0 and len(llm.completions) == 1)
            await bridge.chat("bob", "cynthia, second question")
            await eventually(lambda: service.queue_depth == 1)
            seen: list[str] = []
            while service.queue_depth:  # bounded: the drip ends within 3 s
                seen.append(service.surface.health()["status"])
                await asyncio.sleep(0.1)
            await bridge.wait_for_commands(2, timeout=15)
            live = service.liveness()
    assert live is not None
    assert "failing" not in seen
    assert len(seen) > 10  # the second mention waited for more than stall_after_seconds


async def test_health_fails_within_30_s_when_every_provider_hangs(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path
) -> None:
    """Both providers hang past their 3 s timeouts: /health says failing (503) within 30 s."""
    async with (
        ScriptedOpenAIServer(default=hang(60)) as primary,
        ScriptedOpenAIServer(default=hang(60)) as backup,
    ):
        primary.push_models(hang(60))
        backup.push_models(hang(60))
        settings = settings_for(
            nats_server.url,
            tmp_path,
            llm={
                "default_provider": "primary",
                "fallback": ["backup"],
                "providers": {
                    "primary": {
                        "type": "openai",
                        "base_url": primary.base_url,
                        "timeout_seconds": 3,
                    },
                    "backup": {"type": "openai", "base_url": backup.base_url, "timeout_seconds": 3},
                },
                "retry": {"attempts": 1},
            },
        )
        started = time.monotonic()
        async with (
            running(Service(settings), timeout=20) as service,
            aiohttp.ClientSession() as http,
        ):
            assert service.surface is not None
            assert service.surface.web is not None
            url = f"http://127.0.0.1:{service.surface.web.port}/health"
            await bridge.chat("alice", "cynthia, anyone home?")
            code, body = 0, {}
            while time.monotonic() - started < 30:
                async with http.get(url) as response:
                    code, body = response.status, await response.json()
                if code == 503:
                    break
                await asyncio.sleep(0.2)
            assert code == 503, body
            assert "no provider in the chain can answer" in body["reasons"]
            assert body["components"]["providers"]["primary"]["consecutive_failures"] >= 1


async def test_a_failed_heartbeat_does_not_end_the_heartbeats(nats_server: NatsServer) -> None:
    """The metadata view raises once: that beat is logged and lost, the next one goes out."""
    import json

    import nats

    from kryten_llm.bus.lifecycle import Lifecycle
    from kryten_llm.config import ServiceConfig

    calls = 0

    def metadata() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 2:  # the first heartbeat (call 1 is the startup announcement)
            raise RuntimeError("a view broke")
        return {"calls": calls}

    nc = await nats.connect(nats_server.url)
    beats: list[dict[str, Any]] = []

    async def on_beat(msg: Any) -> None:
        beats.append(json.loads(msg.data))

    await nc.subscribe("kryten.lifecycle.llm.heartbeat", cb=on_beat)
    lifecycle = Lifecycle(
        nc,
        ServiceConfig(heartbeat_interval_seconds=1, mirror_subjects=False),
        version="0.0.0",
        metadata=metadata,
    )
    try:
        await lifecycle.start()
        await eventually(lambda: len(beats) == 1, timeout=5)
    finally:
        await lifecycle.stop("test finished")
        await nc.close()
    assert beats[0]["metadata"] == {"calls": 3}


async def test_only_what_cytube_asks_for_counts_as_a_sending_pause(
    nats_server: NatsServer, bridge: FakeBridge
) -> None:
    """The sender's own gap between two messages is pacing; a cooldown is a pause."""
    import nats

    from kryten_llm.bus.sender import ChatSender
    from kryten_llm.config import ChannelConfig, SendConfig

    clock = Clock()
    channel = ChannelConfig(channel="MyChannel")
    nc = await nats.connect(nats_server.url)
    try:
        sender = ChatSender(nc, SendConfig(min_gap_seconds=2.0), clock=clock)
        await sender.say(channel, "hello")
        await bridge.wait_for_commands(1)
    finally:
        await nc.close()
    assert sender.paused_for(channel) == 0.0  # 2 s of pacing ahead, not a pause
    sender.on_cooldown(channel, 20_000)
    assert sender.paused_for(channel) == 20.0
    clock.now += 20
    assert sender.paused_for(channel) == 0.0
