"""Spam strikes and title claims in JetStream KV: what they cost, against a real nats-server.

    python bench/bench_spamshare.py

1. The NATS callback: ``SpamGuard.check`` on a stream of messages from many users (one in
   eight an offence), alone and with the KV store attached (an offence is only queued there),
   three rounds interleaved. The store must add nothing the callback waits on.
2. Sharing: 1,000 offences of different users queued at once; seconds until all are written
   (compare-and-set: one read and one write each).
3. Start of a new instance: seconds to read 1,000 standings (the watch) before it subscribes.
4. A title claim (``KVClaimStore.claim``: read + compare-and-set), p50/p95 over 2,000.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from datetime import UTC, datetime

import nats
import structlog
from _harness import machine, pct

from kryten_llm.cluster.seen import KVClaimStore, claim_key
from kryten_llm.cluster.spamshare import SharedSpamStrikes
from kryten_llm.config import SpamConfig
from kryten_llm.pipeline.spam import SpamGuard, Standing
from tests.natsserver import NatsServer

MESSAGES = 50_000
USERS = 1000
SPAM = SpamConfig(max_messages=7, window_seconds=30)


def judge(guard: SpamGuard) -> float:
    """µs per check over MESSAGES messages; every user's eighth message in a row is a flood."""
    start = time.perf_counter()
    for i in range(MESSAGES):
        guard.check(f"user{i // 8 % USERS}", f"cynthia, question {i}", rank=0)
    return (time.perf_counter() - start) / MESSAGES * 1e6


async def callback_cost(url: str) -> None:
    nc = await nats.connect(url)
    alone: list[float] = []
    shared: list[float] = []
    try:
        for round_ in range(3):
            alone.append(judge(SpamGuard(SPAM)))
            guard = SpamGuard(SPAM)
            store = await SharedSpamStrikes.start(
                nc, guard, bucket=f"bench_spam_cb{round_}", replicas=1, retry_seconds=10
            )
            shared.append(judge(guard))
            await store.stop()
    finally:
        await nc.close()
    print(
        f"check() per message, {MESSAGES} messages, {USERS} users: alone "
        f"{', '.join(f'{x:.2f}' for x in alone)} µs; with KV store "
        f"{', '.join(f'{x:.2f}' for x in shared)} µs (median {statistics.median(alone):.2f} "
        f"vs {statistics.median(shared):.2f})"
    )


async def sharing(url: str) -> None:
    nc = await nats.connect(url)
    try:
        guard = SpamGuard(SPAM)
        store = await SharedSpamStrikes.start(
            nc, guard, bucket="bench_spam_share", replicas=1, retry_seconds=10
        )
        now = time.monotonic()
        start = time.perf_counter()
        for i in range(USERS):
            store.note(Standing(f"user{i}", 1, now, now + 600))
        while store.written < USERS:  # noqa: ASYNC110 - a counter, polled as the tests do
            await asyncio.sleep(0.005)
        written = time.perf_counter() - start
        await store.stop()
        later = SpamGuard(SPAM)
        start = time.perf_counter()
        late = await SharedSpamStrikes.start(
            nc, later, bucket="bench_spam_share", replicas=1, retry_seconds=10
        )
        loaded = time.perf_counter() - start
        assert late.loaded == USERS, late.loaded
        assert later.adopted == USERS, later.adopted
        await late.stop()
    finally:
        await nc.close()
    print(
        f"{USERS} offences written in {written:.2f} s ({USERS / written:.0f}/s); "
        f"a new instance read {USERS} standings in {loaded:.3f} s"
    )


async def title_claims(url: str) -> None:
    nc = await nats.connect(url)
    try:
        store = await KVClaimStore.open(nc, "bench_titles", window=3600, replicas=1)
        times = []
        for i in range(2000):
            key = claim_key("cytu.be/mychannel", f"Title {i % 500}")
            start = time.perf_counter()
            await store.claim(key, 1e9 + i, 3600)
            times.append((time.perf_counter() - start) * 1000)
    finally:
        await nc.close()
    print(f"title claim: p50 {pct(times, 0.5):.3f} ms, p95 {pct(times, 0.95):.3f} ms")


async def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine()}")
    with NatsServer() as server:
        await callback_cost(server.url)
        await sharing(server.url)
        await title_claims(server.url)


if __name__ == "__main__":
    asyncio.run(main())
