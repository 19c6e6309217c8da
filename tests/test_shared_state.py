"""State shared through JetStream KV by several instances: spam strikes and the video titles
already commented, against a real nats-server.

Each "instance" here is its own NATS connection with its own spam guard and store, as two bot
processes have (the two-process test is in ``test_cluster.py``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS

from kryten_llm.cluster import spamshare
from kryten_llm.cluster.kv import bucket_name, open_bucket, read_json, retrying, safe_key
from kryten_llm.cluster.seen import KVClaimStore, claim_key
from kryten_llm.cluster.spamshare import SharedSpamStrikes, bucket_ttl
from kryten_llm.config import ChannelConfig, SpamConfig
from kryten_llm.errors import ControlError
from kryten_llm.pipeline.decisions import Reason
from kryten_llm.pipeline.spam import SAME_OFFENCE_SECONDS, SpamGuard, Standing, merged
from kryten_llm.service import Service
from tests.bridge import FakeBridge
from tests.cluster_helpers import Instances, cluster_config, startups, undecided, wait_instances
from tests.conftest import Clock, eventually, running, settings_for
from tests.natsserver import NatsServer
from tests.test_cluster import numbers

SPAM = SpamConfig(max_identical=2, base_penalty_seconds=300, forgive_after_seconds=900)


@pytest.fixture
async def connect(nats_server: NatsServer) -> AsyncIterator[Callable[[], Awaitable[NATS]]]:
    """Connections to the module's server (one per instance), all closed at the end."""
    opened: list[NATS] = []

    async def one() -> NATS:
        nc = await nats.connect(nats_server.url)
        opened.append(nc)
        return nc

    try:
        yield one
    finally:
        for nc in opened:
            await nc.close()


Share = Callable[[SpamGuard, str], Awaitable[SharedSpamStrikes]]


@pytest.fixture
async def share(connect: Callable[[], Awaitable[NATS]]) -> AsyncIterator[Share]:
    """Shares a guard's strikes through a bucket, as an instance of its own (a connection of
    its own); every store is stopped at the end."""
    async with AsyncExitStack() as stack:

        async def start(guard: SpamGuard, bucket: str) -> SharedSpamStrikes:
            store = await SharedSpamStrikes.start(
                await connect(), guard, bucket=bucket, replicas=1, retry_seconds=5
            )
            stack.push_async_callback(store.stop)
            return store

        yield start


def spam_twice(guard: SpamGuard, username: str = "spammer") -> None:
    """The same mention twice: the second is an ``identical`` offence (strike 1)."""
    assert guard.check(username, "cynthia, buy my stuff", rank=0).allowed
    verdict = guard.check(username, "cynthia, buy my stuff", rank=0)
    assert (verdict.allowed, verdict.offence, verdict.strikes) == (False, "identical", 1)


# --- the merge ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        pytest.param(
            Standing("u", 1, 100.0, 400.0),
            Standing("u", 1, 100.4, 400.4),
            Standing("u", 1, 100.4, 400.4),
            id="one offence stamped twice: the harsher values",
        ),
        pytest.param(
            Standing("u", 2, 100.0, 700.0),
            Standing("u", 1, 100.3, 400.3),
            Standing("u", 2, 100.3, 700.0),
            id="one offence, one instance knew a strike more",
        ),
        pytest.param(
            Standing("u", 3, 100.0, 1300.0),
            Standing("u", 1, 5000.0, 5300.0),
            Standing("u", 1, 5000.0, 5300.0),
            id="a later offence after forgiveness wins",
        ),
        pytest.param(
            Standing("u", 0, 0.0, 0.0),
            Standing("u", 1, 100.0, 400.0),
            Standing("u", 1, 100.0, 400.0),
            id="no strikes yet",
        ),
    ],
)
def test_merged_standings_agree_in_either_order_and_twice(
    a: Standing, b: Standing, expected: Standing
) -> None:
    assert merged(a, b) == expected
    assert merged(b, a) == expected
    assert merged(merged(a, b), b) == expected
    assert merged(None, b) == b


def test_a_guard_adopts_a_mute_but_not_a_forgiven_standing(clock: Clock) -> None:
    guard = SpamGuard(SPAM, clock=clock)
    old = Standing("Spammer", 2, clock() - 1000, clock() - 400)  # served and forgiven
    assert not guard.adopt(old)
    assert guard.check("spammer", "hello cynthia", rank=0).allowed
    assert guard.adopt(Standing("Spammer", 1, clock(), clock() + 300))
    assert not guard.adopt(Standing("spammer", 1, clock(), clock() + 300))  # nothing new
    # Our own standing back from KV, its times rounded and moved through the wall clock.
    assert not guard.adopt(Standing("spammer", 1, clock() + 0.0004, clock() + 300.0004))
    verdict = guard.check("SPAMMER", "a fresh question, cynthia", rank=0)
    assert (verdict.allowed, verdict.strikes) == (False, 1)
    assert verdict.retry_after == pytest.approx(300)
    assert guard.adopted == 1


def test_every_new_offence_is_told_once(clock: Clock) -> None:
    guard = SpamGuard(SPAM, clock=clock)
    told: list[Standing] = []
    guard.on_strike = told.append
    spam_twice(guard)
    assert not guard.check("spammer", "cynthia, buy my stuff", rank=0).allowed  # serving it
    assert told == [Standing("spammer", 1, clock(), clock() + 300)]


# --- spam strikes in KV ---------------------------------------------------------------------


async def test_a_mute_reaches_a_running_instance_and_one_started_later(
    share: Share, connect: Callable[[], Awaitable[NATS]]
) -> None:
    """Instance A mutes a spammer: B (running) learns it through the watch, C (started after)
    reads it at start, and both ignore the spammer's next, innocent message."""
    bucket = "test_spam_share"
    guards = [SpamGuard(SPAM) for _ in range(3)]
    stores = [await share(guard, bucket) for guard in guards[:2]]
    spam_twice(guards[0])
    await eventually(lambda: stores[0].written == 1)
    await eventually(lambda: guards[1].adopted == 1)
    assert not guards[1].check("spammer", "what time is it, cynthia?", rank=0).allowed

    late = await share(guards[2], bucket)
    assert late.loaded == 1
    verdict = guards[2].check("spammer", "what time is it, cynthia?", rank=0)
    assert (verdict.allowed, verdict.strikes) == (False, 1)
    assert verdict.retry_after > 250
    assert guards[2].check("bob", "what time is it, cynthia?", rank=0).allowed

    kv = await open_bucket(await connect(), bucket, ttl=1, replicas=1)
    status = await kv.status()
    assert status.ttl == pytest.approx(bucket_ttl(SPAM))


async def test_two_instances_writing_one_offence_keep_one_record_with_the_harsher_values(
    connect: Callable[[], Awaitable[NATS]],
) -> None:
    """Both instances saw the same message and write at once: compare-and-set with the merge
    leaves the record both would agree on, whichever write came first."""
    bucket = "test_spam_race"
    guards = [SpamGuard(SPAM) for _ in range(2)]
    stores = [
        await SharedSpamStrikes.start(
            await connect(), guard, bucket=bucket, replicas=1, retry_seconds=5
        )
        for guard in guards
    ]
    try:
        now = 1000.0
        # The merge differs from both (their strikes and stamp, my longer penalty): a store
        # that only overwrote would leave one of the two.
        mine = Standing("racer", 1, now, now + 800)
        theirs = Standing("racer", 2, now + SAME_OFFENCE_SECONDS / 2, now + 500)
        for _ in range(3):  # the same pair again changes nothing
            stores[0].note(mine)
            stores[1].note(theirs)
        await eventually(lambda: stores[0].written + stores[1].written >= 1)
        for store in stores:
            await store.stop()  # flushes what is pending
        kv = await open_bucket(await connect(), bucket, ttl=1, replicas=1)
        value, _ = await read_json(kv, safe_key("racer"))
        expected = merged(mine, theirs)
        assert expected not in (mine, theirs)
        assert value["strikes"] == expected.strikes == 2
        assert value["until"] - value["last"] == pytest.approx(
            expected.penalty_until - expected.last_offence
        )
    finally:
        for store in stores:
            await store.stop()


async def test_a_kv_outage_never_blocks_the_guard_and_pending_writes_stay_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server goes away: the guard still judges (in memory), pending writes are capped,
    the rest are counted as dropped, the pending ones fail after the retry time; when the
    server is back, the next offence is shared again."""
    monkeypatch.setattr(spamshare, "MAX_PENDING", 3)
    bucket = "test_spam_outage"
    with NatsServer() as server:
        nc = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
        guard = SpamGuard(SPAM)
        store = await SharedSpamStrikes.start(
            nc, guard, bucket=bucket, replicas=1, retry_seconds=0.5
        )
        try:
            server.kill()
            for i in range(6):
                spam_twice(guard, f"user{i}")  # judged at once, every time
            assert (store.pending, store.dropped) == (3, 3)
            await eventually(lambda: store.failed == 3, timeout=15)
            assert store.written == 0
            assert not guard.check("user5", "cynthia, hi", rank=0).allowed

            server.start()  # the same store: the bucket is still there
            kv = await retrying(
                lambda: open_bucket(nc, bucket, ttl=1, replicas=1), 15, what="server back"
            )
            await retrying(lambda: read_json(kv, "x"), 15, what="server back")
            spam_twice(guard, "late")
            await eventually(lambda: store.written == 1, timeout=15)
            value, _ = await read_json(kv, safe_key("late"))
            assert (value["user"], value["strikes"]) == ("late", 1)
        finally:
            async with asyncio.timeout(5):
                await store.stop()
            await nc.close()


# --- titles already commented ----------------------------------------------------------------


async def test_title_claims_ignore_channel_case_and_only_one_instance_wins(
    connect: Callable[[], Awaitable[NATS]],
) -> None:
    """Two instances, one configured with ``MyChannel`` and one with ``mychannel`` (the same
    CyTube channel), claim the same title at once: exactly one comments."""
    stores = [
        await KVClaimStore.open(await connect(), "test_titles", window=3600, replicas=1)
        for _ in range(2)
    ]
    keys = [
        claim_key(ChannelConfig(channel=name).key, title)
        for name, title in (("MyChannel", "The  Thing"), ("mychannel", "the thing"))
    ]
    assert keys[0] == keys[1]
    results = await asyncio.gather(
        *(s.claim(k, 5000.0, 3600) for s, k in zip(stores, keys, strict=True))
    )
    assert sorted(results) == [False, True]
    assert await stores[1].claimed_at(keys[0]) == 5000.0
    assert not await stores[0].claim(keys[0], 5000.0 + 3599, 3600)
    assert await stores[0].claim(keys[0], 5000.0 + 3601, 3600)
    other = claim_key(ChannelConfig(channel="OtherChannel").key, "The Thing")
    assert await stores[1].claim(other, 5000.0, 3600)
    kv = await open_bucket(await connect(), "test_titles", ttl=1, replicas=1)
    assert (await kv.status()).ttl == pytest.approx(3600 + 3600)
    value, _ = await read_json(kv, keys[0])
    assert json.loads(json.dumps(value)) == {"at": 5000.0 + 3601}


# --- two bot processes ----------------------------------------------------------------------


async def counters_when(
    nc: NATS, service: str, done: Callable[[dict[str, dict[str, int]]], bool]
) -> dict[str, dict[str, int]]:
    """Each instance's counters (by instance id), polled until ``done`` says so (or 60 s)."""
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        found = await startups(nc, 2, 2.0, service=service)
        stats = {name: body["metadata"]["stats"] for name, body in found.items()}
        if done(stats):
            return stats
        assert asyncio.get_running_loop().time() < deadline, stats
        await asyncio.sleep(0.1)


async def test_a_spammer_muted_by_one_instance_stays_muted_on_an_instance_started_later(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """Instance A mutes a spammer (three mentions in a row: a flood); B starts afterwards,
    reads the mute from KV before it listens, and ignores the spammer's next mention too,
    while it still takes in (and claims) other users' mentions."""
    service = "spamshare"
    config = cluster_config(
        [nats_server.url],
        service={"name": service},
        spam={"enabled": True, "max_messages": 2, "base_penalty_seconds": 600},
    )
    watcher = await nats.connect(nats_server.url)
    instances = Instances(tmp_path, config, 1)
    try:
        [first] = await wait_instances(watcher, 1, service=service)
        async with FakeBridge(nats_server.url, echo=False) as bridge:
            for i in (1, 2, 3):
                await bridge.chat("spammer", f"cynthia, question #{i}?")
            await counters_when(
                watcher,
                service,
                lambda s: s[first].get("decision_spam") == 1 and undecided(s[first]) == 0,
            )
            instances.add()
            await wait_instances(watcher, 2, service=service)
            [second] = set(await startups(watcher, 2, service=service)) - {first}
            await bridge.chat("spammer", "cynthia, question #4?")
            for i in range(5, 11):
                await bridge.chat(f"user{i}", f"cynthia, question #{i}?")
            stats = await counters_when(
                watcher,
                service,
                lambda s: (
                    len(s) == 2
                    and (s[first].get("decision_spam"), s[first].get("triggered")) == (2, 8)
                    and (s[second].get("decision_spam"), s[second].get("triggered")) == (1, 6)
                    and all(undecided(x) == 0 for x in s.values())
                ),
            )
            await bridge.flush()
            answered = numbers(bridge.says())
        assert answered == Counter(dict.fromkeys((1, 2, *range(5, 11)), 1)), answered
        assert sum(s.get("decision_answered", 0) for s in stats.values()) == 8
        [shared] = [x for x in instances.log_lines(1) if x.get("event") == "spam_strikes_shared"]
        assert shared["loaded"] == 1
        assert shared["adopted"] == 1
    finally:
        await watcher.close()
        assert instances.stop() == [0, 0]


async def test_health_shows_what_the_shared_spam_strikes_read_and_wrote(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """``/health`` (``cluster.spam_share``): a flood's offence is written once, none pending."""
    settings = settings_for(
        nats_server.url,
        tmp_path,
        cluster={"enabled": True},
        service={"name": "spamhealth"},
        spam={"enabled": True, "max_messages": 1, "base_penalty_seconds": 600},
    )
    async with running(Service(settings)) as service, FakeBridge(nats_server.url) as bridge:
        assert service.bot is not None
        assert service.bot.spam_share is not None
        share = service.bot.spam_share
        assert service.surface is not None
        before = service.surface.health()
        assert before["components"]["cluster"]["spam_share"] == {
            "loaded": 0,
            "pending": 0,
            "written": 0,
            "dropped": 0,
            "failed": 0,
        }
        await bridge.chat("alice", "cynthia, are you there?")
        await bridge.chat("alice", "cynthia, still there?")
        await eventually(lambda: service.stats.decisions[Reason.SPAM] == 1)
        await eventually(lambda: share.written == 1 and share.pending == 0)
        health = service.surface.health()
    assert health["components"]["cluster"]["spam_share"] == {
        "loaded": 0,
        "pending": 0,
        "written": 1,
        "dropped": 0,
        "failed": 0,
    }


async def test_clearing_forgives_a_spammer_on_every_instance_and_one_started_later(
    share: Share,
) -> None:
    """The operator's "clear cooldowns" on A: B (running) forgives through the watch, C
    (started after) finds nothing to hold; a strike after the clear is shared again."""
    bucket = "test_spam_clear"
    guards = [SpamGuard(SPAM) for _ in range(3)]
    stores = [await share(guard, bucket) for guard in guards[:2]]
    spam_twice(guards[0])
    await eventually(lambda: stores[0].written == 1 and guards[1].adopted == 1)
    assert not guards[1].check("spammer", "what time is it, cynthia?", rank=0).allowed

    guards[0].clear()
    await stores[0].clear()
    await eventually(lambda: stores[1].cleared_at > 0)  # (checking would add messages)
    assert guards[1].check("spammer", "is it noon, cynthia?", rank=0).allowed

    late = await share(guards[2], bucket)
    assert late.loaded == 0
    assert guards[2].check("spammer", "what time is it now, cynthia?", rank=0).allowed

    spam_twice(guards[1], "other")  # after the clear: shared as before
    await eventually(lambda: guards[2].adopted == 1)
    assert not guards[2].check("other", "hello again, cynthia", rank=0).allowed
    assert guards[2].check("spammer", "and now, cynthia?", rank=0).allowed


async def test_a_clear_heard_again_forgives_nothing_that_came_after_it(
    share: Share, connect: Callable[[], Awaitable[NATS]]
) -> None:
    """A strike from before a clear that is written after it (it was in flight) is void
    everywhere; an instance whose watch starts again replays the marker and keeps a strike
    made after the clear that it never managed to write."""
    bucket = "test_spam_replay"
    first = SpamGuard(SPAM)
    store = await share(first, bucket)
    spam_twice(first, "early")
    await eventually(lambda: store.written == 1)
    before_clear = time.time()
    first.clear()
    await store.clear()
    late_write = {"user": "early", "strikes": 1, "last": before_clear, "until": time.time() + 300}
    kv = await open_bucket(await connect(), bucket, ttl=bucket_ttl(SPAM), replicas=1)
    await kv.put(safe_key("early"), json.dumps(late_write).encode())
    assert json.loads((await kv.get(safe_key("early"))).value or b"") == late_write

    second = SpamGuard(SPAM)
    spam_twice(second, "later")  # after the clear; never shared (not started yet)
    replayed = await share(second, bucket)  # reads the marker and the late write
    assert replayed.loaded == 0  # the late write is void: nothing held against anyone
    assert not second.check("later", "cynthia, hello again", rank=0).allowed
    assert second.check("early", "cynthia, am I forgiven?", rank=0).allowed


@pytest.mark.parametrize("clustered", [True, False])
async def test_the_operators_clear_cooldowns_lifts_a_mute(
    clustered: bool, nats_server: NatsServer, tmp_path: Path
) -> None:
    """A flood mutes alice; the operator's "clear cooldowns" lifts it, and her next mention is
    answered (before, it cleared the rate limits and kept the mute), alone or among several."""
    settings = settings_for(
        nats_server.url,
        tmp_path,
        cluster={"enabled": clustered},
        service={"name": "spamclear" if clustered else "spamclearalone"},
        spam={"enabled": True, "max_messages": 1, "base_penalty_seconds": 600},
    )
    async with running(Service(settings)) as service, FakeBridge(nats_server.url) as bridge:
        await bridge.chat("alice", "cynthia, are you there?")
        await bridge.chat("alice", "cynthia, still there?")
        await eventually(lambda: service.stats.decisions[Reason.SPAM] == 1)
        await bridge.wait_for_commands(1)
        assert service.operator is not None
        await service.operator.clear_cooldowns()
        await bridge.chat("alice", "cynthia, and now?")
        await bridge.wait_for_commands(2)
        assert service.stats.decisions[Reason.SPAM] == 1
    assert [said for said in bridge.says() if "and now" in said]


async def test_a_clear_that_jetstream_fails_says_so_and_still_clears_this_instance(
    nats_server: NatsServer, nc: NATS, tmp_path: Path
) -> None:
    """The spam bucket is gone: the operator hears a 503 that names what was not cleared, and
    this instance has forgiven alice all the same."""
    settings = settings_for(
        nats_server.url,
        tmp_path,
        cluster={"enabled": True, "claim_timeout_seconds": 0.5},
        service={"name": "spamclearfail"},
        spam={"enabled": True, "max_messages": 1, "base_penalty_seconds": 600},
    )
    async with running(Service(settings)) as service, FakeBridge(nats_server.url) as bridge:
        await bridge.chat("alice", "cynthia, are you there?")
        await bridge.chat("alice", "cynthia, still there?")
        await eventually(lambda: service.stats.decisions[Reason.SPAM] == 1)
        await nc.jetstream().delete_key_value(bucket_name("spamclearfail", "spam"))
        assert service.operator is not None
        with pytest.raises(ControlError) as refused:
            await service.operator.clear_cooldowns()
        assert refused.value.status == 503
        assert "clear spam strikes" in str(refused.value)
        await bridge.chat("alice", "cynthia, and now?")
        await bridge.wait_for_commands(2)
    assert service.stats.decisions[Reason.SPAM] == 1
