"""Deciding in a cluster without holding the NATS callback, and shared limits that read a local
copy of the bucket and record hits while the reply is prepared.

Real nats-server (JetStream) throughout; the bot runs in-process where its counters are read,
and as several processes where the behaviour is across instances.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from array import array
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from nats.aio.client import Client as NATS
from nats.js.errors import KeyNotFoundError

from kryten_llm.bot.replypath import build_reply_path
from kryten_llm.bot.responselog import ResponseLog
from kryten_llm.bus.events import ChatEvent, Envelope
from kryten_llm.cluster.kv import open_bucket
from kryten_llm.cluster.kvstore import SharedRateLimitStore, pack, record_of, unpack
from kryten_llm.config import ChannelConfig, RateLimitConfig, TriggersConfig, TriggerWordConfig
from kryten_llm.llm import build_manager
from kryten_llm.pipeline.decisions import ALLOWED, RateDecision, Reason, TriggerMatch
from kryten_llm.pipeline.jobs import Job
from kryten_llm.pipeline.prompt import PromptInput
from kryten_llm.pipeline.ratelimit import RateLimiter
from kryten_llm.pipeline.stats import Count, Flags, Stats
from kryten_llm.service import Service
from tests.bridge import FakeBridge
from tests.cluster_helpers import Instances, cluster_config, wait_decided, wait_instances
from tests.conftest import OPEN_LIMITS, eventually, read_log, running, settings_for, undecided
from tests.natsserver import NatsServer

MENTION = TriggerMatch("mention", "mention")


async def stall_claims_with_a_peer(service: Service, nc: NATS, name: str) -> None:
    """Register a made-up peer of service ``name`` (claims are then waited for, not sent with
    the hit) and delete its claims bucket: every claim is retried until it times out."""
    assert service.bot is not None
    cluster = service.bot.intake.admission.cluster
    assert cluster is not None
    instances = await nc.jetstream().key_value(f"kryten_{name}_instances")
    await instances.put("another", b'{"instance_id": "another"}')
    await eventually(lambda: not cluster.alone)
    await nc.jetstream().delete_stream(f"KV_kryten_{name}_claims")


async def test_a_stalled_claim_does_not_hold_the_channels_next_events(
    nats_server: NatsServer, nc: NATS, tmp_path: Path
) -> None:
    """Issue 15: the claim waits on JetStream in the channel's lane, not in the NATS callback.
    With a peer in the registry (so the claim is waited for before anything else: alone, it
    would travel with the hit) and the claims bucket gone, a mention's claim is retried for
    ``claim_timeout_seconds``; meanwhile the channel's next events (a join, chat lines) are
    taken in at once. After the timeout the mention is refused ``claim_failed``, with its
    response-log line."""
    settings = settings_for(
        nats_server.url,
        tmp_path,
        service={"name": "stall"},
        cluster={"enabled": True, "claim_timeout_seconds": 3.0, "heartbeat_seconds": 0.2},
    )
    async with (
        running(Service(settings)) as service,
        FakeBridge(nats_server.url, echo=False) as bridge,
    ):
        await stall_claims_with_a_peer(service, nc, "stall")
        await bridge.chat("alice", "cynthia, are you there?")
        await bridge.publish("addUser", {"name": "bob", "rank": 0, "profile": {}, "meta": {}})
        for i in range(5):
            await bridge.chat("carol", f"just chatting {i}")
        assert service.bot is not None
        state = next(iter(service.bot.channels.values())).state
        # Everything after the mention was handled while its claim still waits.
        await eventually(lambda: service.stats.totals[Count.CHAT] == 6 and "bob" in state.users)
        assert service.stats.totals[Count.TRIGGERED] == 1
        assert Reason.CLAIM_FAILED not in service.stats.decisions
        assert undecided(service.stats) == 1  # the mention waits in its lane for the claim
        await eventually(lambda: service.stats.decisions[Reason.CLAIM_FAILED] == 1, 10)
    (line,) = [r for r in read_log(tmp_path) if r["username"] == "alice"]
    assert line["reason"] == "claim_failed"
    assert bridge.says() == []


async def test_a_full_lane_drops_its_oldest_waiting_message_with_a_line(
    nats_server: NatsServer, nc: NATS, tmp_path: Path
) -> None:
    """A lane holds at most ``processing.queue_size`` messages waiting for their decision:
    with claims stalled (a peer registered, the claims bucket gone) and alice's claim
    pending, bob and carol wait; dave's pushes bob out, with a ``queue_overflow`` line, and
    nothing of bob's is claimed."""
    settings = settings_for(
        nats_server.url,
        tmp_path,
        service={"name": "lanefull"},
        cluster={"enabled": True, "claim_timeout_seconds": 2.0, "heartbeat_seconds": 0.2},
        processing={"queue_size": 2},
    )
    async with (
        running(Service(settings)) as service,
        FakeBridge(nats_server.url, echo=False) as bridge,
    ):
        await stall_claims_with_a_peer(service, nc, "lanefull")
        stats = service.stats
        await bridge.chat("alice", "cynthia, one?")
        await eventually(lambda: stats.totals[Count.TRIGGERED] == 1)
        await asyncio.sleep(0.05)  # the lane's task takes alice and waits for her claim
        for name in ("bob", "carol", "dave"):
            await bridge.chat(name, f"cynthia, {name}?")
        await eventually(lambda: stats.decisions[Reason.QUEUE_OVERFLOW] == 1)
        await eventually(lambda: stats.decisions[Reason.CLAIM_FAILED] == 3, 15)
    lines = {r["username"]: r["reason"] for r in read_log(tmp_path)}
    assert lines == {
        "alice": "claim_failed",
        "bob": "queue_overflow",
        "carol": "claim_failed",
        "dave": "claim_failed",
    }


def user_hits(value: bytes | None, user: str = "alice") -> int:
    """How many hits of ``u:<user>`` the user's record (its KV value) holds."""
    return len(unpack(value).get(f"u:{user}", array("d")))


def copied_hits(store: SharedRateLimitStore, user: str = "alice") -> int:
    """How many hits of ``u:<user>`` the store's copy of the bucket holds."""
    seen = store.mirror.get(f"user.{user}")
    return user_hits(seen[0], user) if seen is not None else -1


@contextlib.asynccontextmanager
async def limiter_pair(
    nc: NATS, bucket: str, ttl: float = 3700, **limits: float
) -> AsyncIterator[tuple[RateLimiter, RateLimiter, SharedRateLimitStore, SharedRateLimitStore]]:
    """Two limiters, each with its own store (two instances), on one limits bucket."""
    kv = await open_bucket(nc, bucket, ttl=ttl, replicas=1)
    config = RateLimitConfig(**{**OPEN_LIMITS, **limits})
    stores = [SharedRateLimitStore(kv, timeout=3.0) for _ in range(2)]
    try:
        for store in stores:
            await store.start()
            await asyncio.wait_for(store.mirror.ready.wait(), 5)
        a, b = (RateLimiter(config, TriggersConfig(), store=store) for store in stores)
        yield a, b, stores[0], stores[1]
    finally:
        for store in stores:
            await store.stop()


async def test_two_instances_deciding_at_once_record_one_hit_and_the_other_is_refused_late(
    nc: NATS,
) -> None:
    """alice may have one reply an hour. Two instances decide on their copies of the bucket at
    the same moment: both see room and both prepare a reply, but only one hit can be recorded
    (compare-and-set); the other decides again on fresh windows and is refused by name."""
    async with limiter_pair(nc, "adm_race", user_per_hour=1) as (a, b, store_a, store_b):
        (first_a, rec_a), (first_b, rec_b) = await asyncio.gather(
            a.admit(username="alice", rank=0, trigger=MENTION),
            b.admit(username="alice", rank=0, trigger=MENTION),
        )
        assert (first_a.allowed, first_b.allowed) == (True, True)  # both copies had room
        assert rec_a is not None  # both hits are still being recorded
        assert rec_b is not None
        finals = await asyncio.gather(rec_a, rec_b)
        assert sorted(d.allowed for d in finals) == [False, True]
        refused = next(d for d in finals if not d.allowed)
        assert refused.limit == "user_per_hour"
        assert store_a.conflicts + store_b.conflicts == 1
        # Both copies now know the hit: a third try is refused at once, nothing in flight.
        await eventually(lambda: copied_hits(store_a) == copied_hits(store_b) == 1)
        for limiter in (a, b):
            decision, recording = await limiter.admit(username="alice", rank=0, trigger=MENTION)
            assert (decision.allowed, decision.limit, recording) == (False, "user_per_hour", None)


async def test_many_concurrent_decisions_on_two_instances_obey_the_global_limit(
    nc: NATS,
) -> None:
    """40 users ask at once, 20 through each instance; global_per_minute 7 lets exactly 7
    through in total, however the compare-and-set races fall."""
    async with limiter_pair(nc, "adm_global", global_per_minute=7) as (a, b, _, _):
        finals = await asyncio.gather(
            *(
                limiter.acquire(username=f"user{i}", rank=0, trigger=MENTION)
                for i in range(20)
                for limiter in (a, b)
            )
        )
        assert sum(d.allowed for d in finals) == 7
        assert {d.limit for d in finals if not d.allowed} == {"global_per_minute"}


async def test_the_one_key_layout_of_the_last_version_is_never_read_nor_written(
    nc: NATS,
) -> None:
    """During a rolling upgrade an instance of the one-key layout keeps ``u.alice`` (its packed
    hits); this layout's records have names of their own, so neither side misreads the other's
    values (each keeps its own limits until the upgrade is done)."""
    kv = await open_bucket(nc, "adm_upgrade", ttl=3700, replicas=1)
    store = SharedRateLimitStore(kv, timeout=3.0)  # no copy started: reads go to JetStream
    limiter = RateLimiter(
        RateLimitConfig(**{**OPEN_LIMITS, "user_per_hour": 1}), TriggersConfig(), store=store
    )
    old = b"\x01" + array("d", [time.time() - 10]).tobytes()
    await kv.put("u.alice", old)
    assert (await limiter.acquire(username="alice", rank=0, trigger=MENTION)).allowed
    assert (await kv.get("u.alice")).value == old
    assert user_hits((await kv.get("user.alice")).value) == 1


def test_a_record_round_trips_every_keys_hits_in_order() -> None:
    record = {
        "u:alice": array("d", [1_795_000_000.125, 1_795_000_001.5]),
        "m:alice": array("d", [1_795_000_002.875]),
        "ch|t:pop\u00e9": array("d", [1.0, 2.0, 3.0]),
    }
    assert unpack(pack(record)) == record
    assert unpack(pack({"u:alice": array("d")})) == {}  # no hits: left out
    assert unpack(b"") == {}


@pytest.mark.parametrize(
    ("key", "record"),
    [
        ("g", "bot"),
        ("w", "bot"),
        ("t:popcorn", "bot"),
        ("u:alice", "user:alice"),
        ("m:alice", "user:alice"),
        ("cytu.be/room|m:alice", "cytu.be/room|user:alice"),
        ("cytu.be/room|t:popcorn", "cytu.be/room|bot"),
        ("x:other", "key:x:other"),
    ],
)
def test_a_users_keys_share_one_record_and_the_bot_wide_keys_another(key: str, record: str) -> None:
    assert record_of(key) == record


@pytest.mark.parametrize(
    "value",
    [
        b"\x01abc",
        b"not json",
        b'{"a": 1}',
        b'["x"]',
        b"\x02\x01\x00\x05\x00\x00\x00g" + b"\x00" * 16,
        b"\x02\x01",
    ],
    ids=["one-key layout", "text", "map", "str", "torn record", "torn head"],
)
def test_an_unreadable_value_reads_as_no_hits(value: bytes) -> None:
    """One bad key (a torn write, another program's value) must not stop every decision that
    reads it: it counts as no hits and the next write replaces it."""
    assert unpack(value) == {}


async def test_a_mention_writes_two_values_and_its_cooldowns_still_hold(nc: NATS) -> None:
    """A reply to a mention records the global, user and mention keys in two values (the
    bot-wide record and the user's); the user's cooldown and the mention cooldown, kept in one
    value, each still refuse by name, and a trigger word's keys join the bot-wide record."""
    kv = await open_bucket(nc, "adm_records", ttl=3700, replicas=1)
    store = SharedRateLimitStore(kv, timeout=3.0)
    limits = {**OPEN_LIMITS, "mention_cooldown_seconds": 60}
    word = TriggerWordConfig(name="popcorn", patterns=["popcorn"], cooldown_seconds=60)
    limiter = RateLimiter(RateLimitConfig(**limits), TriggersConfig(words=[word]), store=store)
    assert (await limiter.acquire(username="alice", rank=0, trigger=MENTION)).allowed
    assert sorted(await kv.keys()) == ["bot", "user.alice"]
    user = unpack((await kv.get("user.alice")).value)
    assert {k: len(v) for k, v in user.items()} == {"u:alice": 1, "m:alice": 1}
    refused = await limiter.acquire(username="alice", rank=0, trigger=MENTION)
    assert (refused.allowed, refused.limit) == (False, "mention_cooldown")
    popcorn = TriggerMatch("word", "popcorn")
    assert (await limiter.acquire(username="bob", rank=0, trigger=popcorn)).allowed
    assert sorted(await kv.keys()) == ["bot", "user.alice", "user.bob"]
    bot = unpack((await kv.get("bot")).value)
    assert {k: len(v) for k, v in bot.items()} == {"g": 2, "w": 1, "t:popcorn": 1}
    refused = await limiter.acquire(username="carol", rank=0, trigger=popcorn)
    assert (refused.allowed, refused.limit) == (False, "trigger_cooldown")


def job_for(channel: ChannelConfig, admitted: asyncio.Future[RateDecision]) -> Job:
    chat = ChatEvent(
        envelope=Envelope("chatMsg", "MyChannel", "cytu.be", "2026-11-30T00:00:00+00:00", "c-1"),
        username="alice",
        text="cynthia, hello?",
        raw="cynthia, hello?",
        time_ms=0,
    )
    prompt = PromptInput(username="alice", text=chat.text, trigger=MENTION, channel="MyChannel")
    loop = asyncio.get_running_loop()
    return Job(
        channel=channel,
        chat=chat,
        prompt=prompt,
        received_at=loop.time(),
        deadline=loop.time() + 10,
        admitted=admitted,
    )


@pytest.mark.parametrize(
    ("decision", "reason", "said"),
    [
        pytest.param(ALLOWED, "dry_run", True, id="recorded->said"),
        pytest.param(
            RateDecision(False, "global_per_minute", 12.5), "rate_limited", False, id="refused"
        ),
    ],
)
async def test_a_reply_is_said_only_once_its_hit_is_recorded(
    nats_server: NatsServer, tmp_path: Path, decision: RateDecision, reason: str, said: bool
) -> None:
    """The worker prepares the reply while the hit is recorded; when the recording comes back
    refused (another instance took the last slot), nothing is said, nothing is remembered
    as said, and the outcome is ``rate_limited`` with the limit that refused."""
    settings = settings_for(nats_server.url, tmp_path)
    stats = Stats()
    response_log = ResponseLog(tmp_path)
    async with aiohttp.ClientSession() as session:
        calls: list[str] = []  # the provider's answers, as the manager reports them
        manager = build_manager(
            settings.llm, session, observer=lambda name, outcome, *_: calls.append(outcome)
        )
        path = build_reply_path(
            settings,
            manager,
            response_log=response_log,
            stats=stats,
            flags=Flags(dry_run=True),
        )
        admitted: asyncio.Future[RateDecision] = asyncio.get_running_loop().create_future()
        job = job_for(settings.channels[0], admitted)
        handling = asyncio.create_task(path.responder.handle(job))
        await eventually(lambda: calls == ["ok"])  # the answer is ready...
        await asyncio.sleep(0)  # (one more turn of the loop for the responder to go on)
        assert not handling.done()  # ...and waits for the recording
        admitted.set_result(decision)
        outcome = await asyncio.wait_for(handling, 5)
    response_log.close()
    assert outcome.reason.value == reason
    assert bool(outcome.parts) is said
    # Only a reply the channel saw is remembered for the repetition check.
    remembered = sum(len(replies) for replies in path.validator._recent.values())
    assert remembered == (1 if said else 0)
    if not said:
        assert (outcome.limit, outcome.retry_after) == ("global_per_minute", 12.5)


async def test_two_instances_with_realistic_limits_log_each_refusal_once_and_answer_none_twice(
    nats_server: NatsServer, nc: NATS, tmp_path: Path
) -> None:
    """Two bot processes, global_per_minute 5: of 30 mentions from 30 users exactly 5 are
    answered, and each of the 25 others has exactly one ``rate_limited`` line, written by
    the instance that claimed it."""
    config = cluster_config(
        [nats_server.url],
        service={"name": "realistic"},
        ratelimit={"global_per_minute": 5},
    )
    instances = Instances(tmp_path, config, 2)
    try:
        await wait_instances(nc, 2, service="realistic")
        async with FakeBridge(nats_server.url, echo=False) as bridge:
            for i in range(30):
                await bridge.chat(f"user{i}", f"cynthia, question #{i}?")
            stats = await wait_decided(nc, 2, triggered=30, service="realistic")
            await bridge.flush()
            says = bridge.says()
        lines = [r for d in instances.dirs for r in read_log(d / "logs")]
    finally:
        assert instances.stop() == [0, 0]
    assert len(says) == 5
    assert sum(s.get("decision_answered", 0) for s in stats.values()) == 5
    by_message: dict[str, str] = {}
    for line in lines:
        assert line["correlation_id"] not in by_message, "a message has two log lines"
        by_message[line["correlation_id"]] = line["reason"]
    assert sorted(by_message.values()).count("rate_limited") == 25
    assert len(by_message) == 30


async def test_a_busy_instance_leaves_the_claim_to_a_peer_with_a_free_worker(
    nats_server: NatsServer, nc: NATS, tmp_path: Path
) -> None:
    """One worker each and a provider taking a second: of four mentions sent together, an
    instance claims the next only once its one worker is free, so each answers two (without
    the rule the instance that reads the messages first claims them all)."""
    config = cluster_config(
        [nats_server.url],
        service={"name": "room"},
        processing={"queue_size": 100, "workers": 1},
        llm={
            "providers": {"slow": {"type": "scripted", "latency_ms": 1000}},
            "default_provider": "slow",
        },
    )
    instances = Instances(tmp_path, config, 2)
    try:
        await wait_instances(nc, 2, service="room")
        async with FakeBridge(nats_server.url, echo=False) as bridge:
            for i in range(4):
                await bridge.chat(f"user{i}", f"cynthia, question #{i}?")
            stats = await wait_decided(nc, 2, triggered=4, service="room", answered=4)
            await bridge.flush()
            says = bridge.says()
    finally:
        assert instances.stop() == [0, 0]
    assert len(says) == 4
    assert sorted(s.get("decision_answered", 0) for s in stats.values()) == [2, 2], stats


@pytest.mark.parametrize("won", [True, False], ids=["claim won", "claim lost"])
async def test_alone_the_hit_travels_with_the_claim_and_a_lost_claim_takes_it_back(
    nc: NATS, won: bool
) -> None:
    """An instance alone in the registry decides without waiting for the claim and sends the
    hit along with it; the reply is prepared meanwhile. If the claim is lost after all
    (another instance just started), the hit is taken back and the recording says
    ``not_claimed``: nothing may be said."""
    kv = await open_bucket(nc, f"adm_optimistic_{won}", ttl=3700, replicas=1)
    store = SharedRateLimitStore(kv, timeout=3.0)
    await store.start()
    await asyncio.wait_for(store.mirror.ready.wait(), 5)
    limiter = RateLimiter(RateLimitConfig(**OPEN_LIMITS), TriggersConfig(), store=store)
    claim: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    try:
        decision, recording = await limiter.admit(
            username="alice", rank=0, trigger=MENTION, claim=lambda: claim, optimistic=True
        )
        assert decision.allowed  # decided before the claim is answered
        assert recording is not None
        # The hit is written before the claim is known.
        await eventually(lambda: copied_hits(store) == 1)
        assert not recording.done()  # ...and the recording waits for the claim
        claim.set_result(won)
        final = await recording
        assert (final.allowed, final.limit) == ((True, "") if won else (False, "not_claimed"))
        await eventually(lambda: copied_hits(store) == (1 if won else 0))
        assert user_hits((await kv.get("user.alice")).value) == (1 if won else 0)
    finally:
        await store.stop()


async def test_a_key_that_expired_without_trace_costs_one_failed_write_not_one_per_decision(
    nc: NATS,
) -> None:
    """A key that ages out of the bucket leaves no event for the watch, so the copy keeps it.
    The next write on it fails (stale revision); the key is read from JetStream, the copy
    corrected, and every later decision on it writes at once."""
    async with limiter_pair(nc, "adm_expired", ttl=1.0) as (limiter, _, store, _):
        assert (await limiter.acquire(username="alice", rank=0, trigger=MENTION)).allowed
        kv = await nc.jetstream().key_value("adm_expired")
        await eventually(lambda: store.mirror.get("user.alice") != (b"", 0))
        copied = store.mirror.get("user.alice")

        async def gone() -> bool:
            try:
                await kv.get("user.alice")
            except KeyNotFoundError:
                return True
            return False

        async with asyncio.timeout(10):  # the max age (1 s here) drops the idle key
            while not await gone():  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        assert store.mirror.get("user.alice") == copied  # the watch saw nothing
        for _ in range(3):
            assert (await limiter.acquire(username="alice", rank=0, trigger=MENTION)).allowed
        assert store.conflicts == 1
        assert user_hits((await kv.get("user.alice")).value) == 3


async def test_stopping_ends_a_lane_that_waits_on_jetstream_with_a_shutdown_line(
    nats_server: NatsServer, nc: NATS, tmp_path: Path
) -> None:
    """The bot stops while a mention's claim waits on a JetStream that does not answer: the
    lane is stopped within the shutdown grace (not after the claim's 10 s), the mention gets
    its ``shutdown`` line, and every triggered message has its decision."""
    settings = settings_for(
        nats_server.url,
        tmp_path,
        service={"name": "lanestop"},
        cluster={"enabled": True, "claim_timeout_seconds": 10.0, "heartbeat_seconds": 0.2},
        processing={"shutdown_grace_seconds": 0.2},
    )
    async with (
        running(Service(settings)) as service,
        FakeBridge(nats_server.url, echo=False) as bridge,
    ):
        await stall_claims_with_a_peer(service, nc, "lanestop")
        await bridge.chat("alice", "cynthia, are you there?")
        await eventually(lambda: service.stats.totals[Count.TRIGGERED] == 1)
        assert undecided(service.stats) == 1  # waiting in its lane for the claim
    assert service.stats.decisions[Reason.SHUTDOWN] == 1
    assert Reason.CLAIM_FAILED not in service.stats.decisions
    assert undecided(service.stats) == 0
    assert [(r["username"], r["reason"]) for r in read_log(tmp_path)] == [("alice", "shutdown")]
