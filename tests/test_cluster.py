"""Several bot processes on one NATS with JetStream: each mention answered exactly once,
limits shared, an instance killed mid-run.

Each test starts real bot processes from one config file in different working directories (the
operator's way), a real nats-server, and kryten-py publishing exactly what the bridge does.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path

from nats.aio.client import Client as NATS

from tests.bridge import FakeBridge
from tests.cluster_helpers import Instances, cluster_config, wait_decided, wait_instances
from tests.natsserver import NatsServer

_NUMBER = re.compile(r"#(\d+)")


def numbers(says: list[str]) -> Counter[int]:
    """How often each numbered question was answered (the echo provider repeats it)."""
    found: Counter[int] = Counter()
    for text in says:
        match = _NUMBER.search(text)
        assert match is not None, text
        found[int(match.group(1))] += 1
    return found


async def test_500_mentions_from_100_users_get_exactly_500_replies_from_three_instances(
    nats_server: NatsServer, nc: NATS, tmp_path: Path
) -> None:
    """Every instance sees every mention; each is answered by exactly one of them."""
    config = cluster_config([nats_server.url], service={"name": "llm"})
    instances = Instances(tmp_path, config, 3)
    try:
        await wait_instances(nc, 3)
        async with FakeBridge(nats_server.url, echo=False) as bridge:
            for i in range(500):
                await bridge.chat(f"user{i % 100}", f"cynthia, question #{i}?")
            stats = await wait_decided(nc, 3, triggered=500)
            await bridge.flush()
            answered = numbers(bridge.says())
        assert sorted(answered) == list(range(500))
        assert set(answered.values()) == {1}, "a mention was answered twice"
        per_instance = [s.get("decision_answered", 0) for s in stats.values()]
        assert sum(per_instance) == 500
        assert sum(s.get("decision_answered_elsewhere", 0) for s in stats.values()) == 1000
        assert sum(1 for n in per_instance if n > 0) >= 2, per_instance  # the work is shared
    finally:
        assert instances.stop() == [0, 0, 0]


async def test_one_users_rate_limit_holds_across_instances(
    nats_server: NatsServer, nc: NATS, tmp_path: Path
) -> None:
    """alice may have 3 replies an hour: two instances together give her 3, not 3 each."""
    config = cluster_config(
        [nats_server.url], service={"name": "limits"}, ratelimit={"user_per_hour": 3}
    )
    instances = Instances(tmp_path, config, 2)
    try:
        await wait_instances_named(nc, "limits", 2)
        async with FakeBridge(nats_server.url, echo=False) as bridge:
            for i in range(12):
                await bridge.chat("alice", f"cynthia, question #{i}?")
            stats = await wait_decided(nc, 2, triggered=12, service="limits")
            await bridge.flush()
            answered = numbers(bridge.says())
        assert sum(answered.values()) == 3
        assert sum(s.get("decision_rate_limited", 0) for s in stats.values()) == 9
        # Both instances decided some of alice's messages: the limit really was shared.
        assert all(
            s.get("decision_answered", 0) + s.get("decision_rate_limited", 0) > 0
            for s in stats.values()
        ), stats
    finally:
        assert instances.stop() == [0, 0]


async def test_sigkill_one_instance_mid_run_loses_only_its_claimed_mentions_and_none_twice(
    nats_server: NatsServer, nc: NATS, tmp_path: Path
) -> None:
    """Three instances; one is SIGKILLed while mentions keep coming. Every mention sent after
    the kill is answered exactly once (the others claim at once: no failover wait), and no
    mention is ever answered twice."""
    config = cluster_config([nats_server.url], service={"name": "failover"})
    instances = Instances(tmp_path, config, 3)
    try:
        await wait_instances_named(nc, "failover", 3)
        async with FakeBridge(nats_server.url, echo=False) as bridge:
            killed_at = 0
            for i in range(300):
                if i == 100:
                    await bridge.flush()  # everything before went out before the kill
                    instances.kill(0)
                    killed_at = i
                await bridge.chat(f"user{i % 50}", f"cynthia, question #{i}?")
                await asyncio.sleep(0.005)
            await wait_decided(nc, 2, triggered=300, service="failover")
            await bridge.flush()
            answered = numbers(bridge.says())
        assert set(answered.values()) == {1}, "a mention was answered twice"
        assert set(range(killed_at, 300)) <= set(answered), "a mention after the kill was lost"
        lost = set(range(killed_at)) - set(answered)
        # What was lost before the kill, the killed instance had claimed (and not answered).
        killed = next(
            line["instance_id"]
            for line in instances.log_lines(0)
            if line.get("event") == "cluster_joined"
        )
        kv = await nc.jetstream().key_value("kryten_failover_claims")
        owners = [(await kv.get(key)).value for key in await kv.keys()]
        assert len(owners) == 300  # every mention was claimed by someone
        assert len(lost) <= owners.count(killed.encode())
    finally:
        assert instances.stop()[1:] == [0, 0]


async def wait_instances_named(nc: NATS, service: str, count: int) -> None:
    await wait_instances(nc, count, service=service)
