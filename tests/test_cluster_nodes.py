"""Two bot instances on a 3-node NATS cluster (routes, JetStream replicated): one node is
SIGKILLed mid-run and no mention is lost or answered twice."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from functools import partial
from pathlib import Path

import nats

from kryten_llm.cluster.kv import retrying
from kryten_llm.service import Service
from tests.bridge import FakeBridge
from tests.cluster_helpers import Instances, cluster_config, wait_decided, wait_instances
from tests.conftest import running, settings_for
from tests.natscluster import NatsCluster

_NUMBER = re.compile(r"#(\d+)")
SHARED_BUCKETS = (
    "kryten_llm_claims",
    "kryten_llm_ratelimits",
    "kryten_llm_instances",
    "kryten_llm_spam",
    "kryten_llm_media_seen",
    "kryten_services",
)


def _victim(cluster: NatsCluster, bridge_node: int) -> int:
    """A node to kill: not the bridge's, holding some but not all bot connections when the
    placement allows it (the bots picked their nodes at random), else none of them."""
    bots = [
        sum(1 for c in node.connz()["connections"] if c.get("name") == "kryten-llm")
        for node in cluster.nodes
    ]
    candidates = [i for i in range(len(cluster.nodes)) if i != bridge_node]
    some = [i for i in candidates if 0 < bots[i] < sum(bots)]
    # Core NATS delivers at most once: a node holding every bot takes the events published
    # while they reconnect with it. Then kill one without bots (still a JetStream peer).
    none = [i for i in candidates if bots[i] == 0]
    return (some or none)[0]


async def test_losing_one_node_of_three_loses_no_reply(tmp_path: Path) -> None:
    """Buckets are replicated over the three nodes; killing one mid-run costs at most a pause
    while its streams elect new leaders: every mention is answered, exactly once."""
    with NatsCluster() as cluster:
        config = cluster_config(
            cluster.urls,
            nats={"reconnect_wait_seconds": 0.5},
            media_change={"enabled": True},  # opens the titles' bucket
        )
        instances = Instances(tmp_path, config, 2)
        bridge_node = 2
        watcher = await nats.connect(cluster.urls[bridge_node])
        try:
            found = await wait_instances(watcher, 2)
            replicas = {b["metadata"]["cluster"]["instance_id"] for b in found.values()}
            assert len(replicas) == 2
            async with FakeBridge(cluster.urls[bridge_node], echo=False) as bridge:
                for i in range(200):
                    if i == 60:
                        await bridge.flush()
                        cluster.kill(_victim(cluster, bridge_node))
                    await bridge.chat(f"user{i % 40}", f"cynthia, question #{i}?")
                    await asyncio.sleep(0.01)
                await wait_decided(watcher, 2, triggered=0, answered=200, timeout=60)
                await bridge.flush()
                answered = Counter(
                    int(m.group(1)) for s in bridge.says() if (m := _NUMBER.search(s))
                )
            assert set(answered.values()) == {1}, "a mention was answered twice"
            assert sorted(answered) == list(range(200)), "a mention was lost"
            # Every piece of shared state is kept on all three nodes: claims, rate-limit
            # windows and trigger cooldowns, the registry, spam strikes, the titles already
            # commented and the ecosystem's service entry.
            js = watcher.jetstream()
            for bucket in SHARED_BUCKETS:  # a stream led by the lost node may still be electing
                info = await retrying(
                    partial(js.stream_info, f"KV_{bucket}"), 20, what=f"stream of {bucket}"
                )
                assert info.config.num_replicas == 3, bucket
        finally:
            await watcher.close()
            instances.stop()
        for index in range(2):
            joined = [x for x in instances.log_lines(index) if x.get("event") == "cluster_joined"]
            assert joined[0]["replicas"] == 3


async def test_cluster_replicas_set_by_the_operator_hold_for_every_bucket(tmp_path: Path) -> None:
    """``cluster.replicas: 1`` on a three-node cluster: every bucket the bot opens, the
    ecosystem's ``kryten_services`` included (it used to ignore the setting), has one replica."""
    with NatsCluster() as cluster:
        settings = settings_for(
            cluster.urls[0],
            tmp_path,
            cluster={"enabled": True, "replicas": 1},
            service={"kv_registry": True},
            media_change={"enabled": True},
        )
        async with running(Service(settings)):
            nc = await nats.connect(cluster.urls[0])
            try:
                js = nc.jetstream()
                for bucket in SHARED_BUCKETS:
                    info = await retrying(
                        partial(js.stream_info, f"KV_{bucket}"), 20, what=f"stream of {bucket}"
                    )
                    assert info.config.num_replicas == 1, bucket
            finally:
                await nc.close()
