"""Channels spread out over instances with leases, and an instance taking over the channels of
one that was killed; plus the bot alone on a NATS account without JetStream.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import nats

from kryten_llm.pipeline.decisions import Reason
from kryten_llm.service import Service
from tests.bridge import Escapes, FakeBridge
from tests.cluster_helpers import Instances, cluster_config, mention, startups, wait_instances
from tests.conftest import eventually, running, settings_for
from tests.natsserver import ConfiguredNatsServer, NatsServer

CHANNELS = [f"Room{i}" for i in range(12)]
LEASE = 3.0


def replies_by_channel(bridge: FakeBridge) -> Counter[str]:
    """Every say command, by the channel it was meant for (the bridge's guard aside)."""
    return Counter(
        c.body["meta"]["channel"]
        for c in [*bridge.commands, *bridge.ignored]
        if c.body["command"] == "say"
    )


async def test_twelve_channels_spread_over_three_instances_and_move_when_one_dies(
    tmp_path: Path,
) -> None:
    """Each instance leases 4 of 12 channels; every channel is answered once; after a SIGKILL
    the dead instance's channels are answered again within the failover window."""
    with NatsServer() as server:
        config = cluster_config(
            [server.url],
            channels=[{"domain": "cytu.be", "channel": c} for c in CHANNELS],
            cluster={"heartbeat_seconds": 1, "peer_ttl_seconds": LEASE},
            sharding={"enabled": True, "lease_seconds": LEASE},
        )
        instances = Instances(tmp_path, config, 3)
        watcher = await nats.connect(server.url)
        try:
            await wait_instances(watcher, 3)
            held = await wait_spread(watcher)
            assert sorted(len(h) for h in held.values()) == [4, 4, 4], held
            async with FakeBridge(server.url, echo=False) as bridge:
                for channel in CHANNELS:
                    await mention(watcher, channel, f"cynthia, hello {channel}")
                await wait_replies(bridge, set(CHANNELS))
                assert set(replies_by_channel(bridge).values()) == {1}
                # Kill the first process: its channels must move to the other two.
                keys = set(held[_instance_of(instances, 0, held)])
                orphaned = {c for c in CHANNELS if f"cytu.be/{c.lower()}" in keys}
                instances.kill(0)
                killed = time.monotonic()
                before = replies_by_channel(bridge)
                answered_again: dict[str, float] = {}
                tries = 0
                while set(answered_again) != orphaned:
                    assert time.monotonic() - killed < 10.0, f"taken over: {answered_again}"
                    tries += 1
                    for channel in sorted(orphaned - set(answered_again)):
                        await mention(
                            watcher, channel, f"cynthia, still there in {channel}? ({tries})"
                        )
                    await asyncio.sleep(0.25)
                    await bridge.flush()
                    now = replies_by_channel(bridge)
                    for channel in orphaned:
                        if now[channel] > before[channel] and channel not in answered_again:
                            answered_again[channel] = time.monotonic() - killed
                print(f"channels answered again after {max(answered_again.values()):.1f} s")
                says = [c.body["args"]["message"] for c in [*bridge.commands, *bridge.ignored]]
                assert len(says) == len(set(says)), "a mention was answered twice"
        finally:
            await watcher.close()
            assert instances.stop()[1:] == [0, 0]


def _instance_of(instances: Instances, index: int, held: dict[str, list[str]]) -> str:
    """The instance id of the process started in ``instances.dirs[index]`` (from its log)."""
    for line in instances.log_lines(index):
        if line.get("event") == "cluster_joined":
            instance: str = line["instance_id"]
            assert instance in held
            return instance
    raise AssertionError("instance 0 never logged cluster_joined")


async def wait_spread(nc: nats.NATS, timeout: float = 30.0) -> dict[str, list[str]]:
    """Wait until the 12 channels are held, each by one instance; who holds which."""
    deadline = time.monotonic() + timeout
    while True:
        found = await startups(nc, 3, 2.0)
        held = {k: b["metadata"]["cluster"].get("channels_held", []) for k, b in found.items()}
        taken = [c for h in held.values() for c in h]
        if len(taken) == 12 and len(set(taken)) == 12 and all(len(h) == 4 for h in held.values()):
            return held
        if time.monotonic() > deadline:
            raise TimeoutError(f"channels not spread: {held}")
        await asyncio.sleep(0.2)


async def wait_replies(bridge: FakeBridge, channels: set[str], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while set(replies_by_channel(bridge)) < channels:
        assert time.monotonic() < deadline, replies_by_channel(bridge)
        await asyncio.sleep(0.05)
    await bridge.flush()


async def test_without_jetstream_the_bot_runs_alone_and_says_so(tmp_path: Path) -> None:
    """An account without JetStream: ``cluster_standalone`` at startup, mentions answered."""
    with ConfiguredNatsServer(
        config="accounts { APP { users [ {user: app, password: app} ] } }"
    ) as server:
        url = f"nats://app:app@127.0.0.1:{server.port}"
        settings = settings_for(
            url,
            tmp_path,
            cluster={"enabled": True},
            service={"kv_registry": False},
            spam={"max_messages": 1},
        )
        with Escapes() as escapes:
            async with (
                running(Service(settings)) as service,
                FakeBridge(url) as bridge,
            ):
                await bridge.chat("alice", "cynthia, are you there?")
                await bridge.wait_for_commands(1)
                assert service.cluster is not None
                assert service.cluster.snapshot()["mode"] == "standalone"
                # Spam strikes stay in memory, judged as before: a second mention is a flood.
                assert service.bot is not None
                assert service.bot.spam_share is None
                await bridge.chat("alice", "cynthia, still there?")
                await eventually(lambda: service.stats.decisions[Reason.SPAM] == 1)
                health = service.surface.health() if service.surface else {}
                assert health["components"]["cluster"]["peers"] == 1
        [line] = escapes.events("cluster_standalone")
        assert "JetStream" in line["reason"]
