"""Several instances: what the claim and the shared limits add to a reply, how long failover
takes, and 3 instances against 1 on 20 channels.

    python bench/bench_cluster.py [--per-message]

1. Per-message cost, in-process against a real nats-server: the claim (KV create), the shared
   rate limiter (decided on the watched copy of the bucket, compare-and-set commit) against the
   in-memory one, and the claim and the shared limiter together as a decision makes them
   (alone in the registry and with peers), each with relaxed limits (every decision allowed:
   the global key holds every hit) and with the default limits (most refused); for the
   queue-group alternative, what a second (queue) subscription costs per message: nothing per
   reply, but every event delivered twice and no shared limits.
2. Failover: three bot processes with sharding (defaults: lease 6 s); one SIGKILLed; seconds
   until each of its channels is answered again. Claims need no failover: the survivors
   claim the next mention at once.
3. Throughput: 240 mentions over 20 channels, a provider taking 100 ms, 2 workers per
   instance: time until all are answered by 1 instance, then by 3.

``--per-message`` runs only the first part.
"""

from __future__ import annotations

import asyncio
import functools
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import nats
from _harness import machine, pct
from nats.aio.client import Client as NATS

from kryten_llm.cluster.claim import ClaimResult, Claims
from kryten_llm.cluster.kv import open_bucket
from kryten_llm.cluster.kvstore import SharedRateLimitStore
from kryten_llm.config import RateLimitConfig, TriggersConfig
from kryten_llm.pipeline.decisions import TriggerMatch
from kryten_llm.pipeline.ratelimit import RateLimiter
from tests.bridge import FakeBridge
from tests.cluster_helpers import (
    Instances,
    cluster_config,
    mention,
    startups,
    wait_instances,
)
from tests.natsserver import NatsServer

N = 2000
MENTION = TriggerMatch("mention", "mention")


async def per_message(url: str) -> None:
    nc = await nats.connect(url)
    claims = Claims(await open_bucket(nc, "bench_claims", ttl=600, replicas=1), "a", 5.0)
    times = []
    for _ in range(N):
        start = time.perf_counter()
        await claims.claim(str(uuid.uuid4()))
        times.append((time.perf_counter() - start) * 1000)
    print(f"claim (KV create): {summary(times)}")
    relaxed = RateLimitConfig(
        global_per_minute=10**6,
        global_per_hour=10**6,
        user_per_hour=10**6,
        global_cooldown_seconds=0,
        user_cooldown_seconds=0,
        mention_cooldown_seconds=0,
    )
    for label, limits in (("relaxed limits", relaxed), ("default limits", RateLimitConfig())):
        await limiter_costs(nc, claims, label, limits)
    # The queue-group alternative: one more subscription per instance; per message its cost
    # is one more delivery, measured as the time to receive N events twice instead of once.
    received = 0
    done = asyncio.Event()

    async def count(_msg: object) -> None:
        nonlocal received
        received += 1
        if received == 2 * N:
            done.set()

    await nc.subscribe("bench.events", cb=count)
    await nc.subscribe("bench.events", queue="decisions", cb=count)
    pub = await nats.connect(url)
    start = time.perf_counter()
    for _ in range(N):
        await pub.publish("bench.events", b"x" * 300)
    await pub.flush()
    await asyncio.wait_for(done.wait(), 30)
    per = (time.perf_counter() - start) / N * 1000
    print(f"queue group: no round trip per reply; events delivered twice ({per:.4f} ms/event)")
    await pub.close()
    await nc.close()


async def limiter_costs(nc: NATS, claims: Claims, label: str, limits: RateLimitConfig) -> None:
    """The rate limiter alone (in memory, shared KV), then the claim and the shared limiter
    together as the admission runs them, alone in the registry (the hit goes with the claim)
    and with peers (claim first, then the hit): N // 4 decisions from 100 users each."""
    bucket = f"bench_limits_{label.split()[0]}"
    store = SharedRateLimitStore(await open_bucket(nc, bucket, ttl=3700, replicas=1), timeout=5.0)
    await store.start()
    await asyncio.wait_for(store.mirror.ready.wait(), 5)
    try:
        for name, limiter in (
            ("in-memory", RateLimiter(limits, TriggersConfig())),
            ("shared KV", RateLimiter(limits, TriggersConfig(), store=store)),
        ):
            times, allowed = [], 0
            for i in range(N // 4):
                start = time.perf_counter()
                decision = await limiter.acquire(username=f"user{i % 100}", rank=0, trigger=MENTION)
                times.append((time.perf_counter() - start) * 1000)
                allowed += decision.allowed
            print(f"{label}, rate limiter ({name}): {summary(times)}; {allowed} allowed")
        await store.clear()
        shared = RateLimiter(limits, TriggersConfig(), store=store)
        for optimistic in (True, False):
            times, allowed = [], 0
            for i in range(N // 4):
                start = time.perf_counter()
                decision, recording = await shared.admit(
                    username=f"user{i % 100}",
                    rank=0,
                    trigger=MENTION,
                    claim=functools.partial(won, claims, str(uuid.uuid4()), optimistic),
                    optimistic=optimistic,
                )
                if recording is not None:
                    decision = await recording
                times.append((time.perf_counter() - start) * 1000)
                allowed += decision.allowed
            how = "alone: hit with the claim" if optimistic else "with peers: claim, then hit"
            print(f"{label}, claim + shared limits ({how}): {summary(times)}; {allowed} allowed")
            await store.clear()
    finally:
        await store.stop()


async def won(claims: Claims, key: str, after_writes: bool = False) -> bool:
    if after_writes:  # as the admission sends it alone: with the hit's writes, one flush
        await asyncio.sleep(0)
    return await claims.claim(key) is ClaimResult.WON


def summary(times: list[float]) -> str:
    return f"p50 {statistics.median(times):.3f} ms, p99 {pct(times, 0.99):.3f} ms"


async def failover(url: str, base: Path) -> None:
    channels = [f"Room{i}" for i in range(6)]
    config = cluster_config(
        [url],
        service={"name": "fo"},
        channels=[{"domain": "cytu.be", "channel": c} for c in channels],
        sharding={"enabled": True},
    )
    instances = Instances(base, config, 3)
    nc = await nats.connect(url)
    try:
        await wait_instances(nc, 3, service="fo")
        while True:
            found = await startups(nc, 3, service="fo")
            held = {
                b["instance_id"]: b["metadata"]["cluster"]["channels_held"] for b in found.values()
            }
            if sorted(len(h) for h in held.values()) == [2, 2, 2]:
                break
            await asyncio.sleep(0.2)
        victim = next(
            x["instance_id"] for x in instances.log_lines(0) if x.get("event") == "cluster_joined"
        )
        orphaned = [c for c in channels if f"cytu.be/{c.lower()}" in held[victim]]
        async with FakeBridge(url, echo=False) as bridge:
            instances.kill(0)
            killed = time.monotonic()
            seen: dict[str, float] = {}
            n = 0
            while len(seen) < len(orphaned):
                n += 1
                for channel in orphaned:
                    if channel not in seen:
                        await mention(nc, channel, f"cynthia, anyone in {channel}? {n}")
                await asyncio.sleep(0.1)
                for c in [*bridge.commands, *bridge.ignored]:
                    ch = c.body["meta"]["channel"]
                    if ch in orphaned and ch not in seen:
                        seen[ch] = time.monotonic() - killed
        worst = max(seen.values())
        print(f"failover (sharded, lease 6 s): channels answered again after {worst:.1f} s")
    finally:
        await nc.close()
        instances.stop()


async def throughput(url: str, base: Path, count: int) -> float:
    channels = [f"Room{i}" for i in range(20)]
    config = cluster_config(
        [url],
        service={"name": f"tp{count}"},
        channels=[{"domain": "cytu.be", "channel": c} for c in channels],
        llm={
            "providers": {"slow": {"type": "scripted", "latency_ms": 100}},
            "default_provider": "slow",
        },
        processing={"queue_size": 1000, "workers": 2},
    )
    instances = Instances(base, config, count)
    nc = await nats.connect(url)
    try:
        await wait_instances(nc, count, service=f"tp{count}")
        async with FakeBridge(url, echo=False) as bridge:
            start = time.monotonic()
            for i in range(240):
                channel = channels[i % 20]
                await mention(nc, channel, f"cynthia #{i}")
            # The bridge's guard files other channels' commands under ``ignored``: count both.
            while len(bridge.commands) + len(bridge.ignored) < 240:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            return time.monotonic() - start
    finally:
        await nc.close()
        instances.stop()


async def main() -> None:
    print(f"machine: {machine()}; {datetime.now(UTC):%Y-%m-%d}")
    with NatsServer() as server:
        await per_message(server.url)
        if "--per-message" in sys.argv:
            return
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "fo").mkdir()
            await failover(server.url, Path(tmp) / "fo")
            (Path(tmp) / "one").mkdir()
            (Path(tmp) / "three").mkdir()
            one = await throughput(server.url, Path(tmp) / "one", 1)
            three = await throughput(server.url, Path(tmp) / "three", 3)
        print(
            f"240 mentions on 20 channels, provider 100 ms, 2 workers each: 1 instance "
            f"{one:.1f} s ({240 / one:.0f}/s), 3 instances {three:.1f} s ({240 / three:.0f}/s)"
        )


if __name__ == "__main__":
    asyncio.run(main())
