"""A reply with the cluster on, as fast as one alone: the claim answered while the reply is
prepared, the shared limits in two KV values per reply.

Real nats-server (JetStream) throughout; the bot runs in-process where its counters are read.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

from nats.aio.client import Client as NATS

from kryten_llm.bot.conversation import Conversation
from kryten_llm.cluster.kv import open_bucket
from kryten_llm.cluster.kvstore import SharedRateLimitStore
from kryten_llm.config import RateLimitConfig, Settings, TriggersConfig
from kryten_llm.pipeline.decisions import Reason, TriggerMatch
from kryten_llm.pipeline.ratelimit import RateLimiter
from kryten_llm.service import Service
from tests.bridge import FakeBridge
from tests.cluster_helpers import Instances, cluster_config, wait_decided, wait_instances
from tests.conftest import OPEN_LIMITS, eventually, read_log, running, settings_for, undecided
from tests.natsserver import NatsServer
from tests.openai_server import ScriptedOpenAIServer, drip
from tests.test_cluster import numbers

MENTION = TriggerMatch("mention", "mention")


def pending_replies(conversation: Conversation) -> int:
    """Replies holding room in the share of chat, over every channel."""
    return sum(talk.share.pending for talk in conversation._talks.values())


def one_slow_worker(
    nats_url: str, tmp_path: Path, name: str, latency_ms: int, **processing: float
) -> Settings:
    """One instance (service ``name``, cluster on), one worker, a model taking ``latency_ms``."""
    return settings_for(
        nats_url,
        tmp_path,
        service={"name": name},
        cluster={"enabled": True},
        processing={"workers": 1, **processing},
        llm={
            "providers": {"slow": {"type": "scripted", "latency_ms": latency_ms}},
            "default_provider": "slow",
        },
    )


async def claimed_elsewhere(nc: NATS, name: str) -> str:
    """A correlation id whose claim another instance of service ``name`` already holds."""
    claims = await nc.jetstream().key_value(f"kryten_{name}_claims")
    taken = str(uuid.uuid4())
    await claims.create(taken, b"another-instance")
    return taken


async def lost_behind_bob(service: Service, bridge: FakeBridge, nc: NATS, name: str) -> None:
    """Bob's mention keeps the one worker busy; alice's, whose claim another instance of
    service ``name`` already holds, is queued behind it and counted answered elsewhere."""
    bot, stats = service.bot, service.stats
    assert bot is not None
    taken = await claimed_elsewhere(nc, name)
    await bridge.chat("bob", "cynthia, one?")
    await eventually(lambda: bot.in_flight == 1)  # the one worker is busy with bob
    await bridge.chat("alice", "cynthia, two?", correlation_id=taken)
    await eventually(lambda: stats.decisions[Reason.ANSWERED_ELSEWHERE] == 1)
    assert len(bot.queue) == 1  # alice's job waits behind bob's


async def test_alone_a_claim_lost_after_the_reply_was_started_says_nothing_and_writes_no_line(
    nats_server: NatsServer, nc: NATS, tmp_path: Path
) -> None:
    """An instance alone in the registry starts preparing a reply before its claim is
    answered. When the claim is lost after all (another instance created the key first),
    nothing is said, no response-log line is written here (the winner writes it), the message
    counts as answered elsewhere, and its room in the share of chat is given back; the next
    mention is answered as usual."""
    settings = settings_for(
        nats_server.url, tmp_path, service={"name": "late"}, cluster={"enabled": True}
    )
    async with (
        running(Service(settings)) as service,
        FakeBridge(nats_server.url, echo=False) as bridge,
    ):
        assert service.bot is not None
        cluster = service.bot.intake.admission.cluster
        assert cluster is not None
        assert cluster.alone
        taken = await claimed_elsewhere(nc, "late")
        await bridge.chat("alice", "cynthia, hi?", correlation_id=taken)
        await bridge.chat("bob", "cynthia, are you there?")
        stats = service.stats
        await eventually(
            lambda: (
                stats.decisions[Reason.ANSWERED] == 1
                and stats.decisions[Reason.ANSWERED_ELSEWHERE] == 1
            )
        )
        await bridge.flush()
        assert len(bridge.says()) == 1
        assert pending_replies(service.bot.conversation) == 0
    lines = read_log(tmp_path)
    assert [(r["username"], r["reason"]) for r in lines] == [("bob", "answered")]


async def test_alone_the_limits_copy_is_kept_without_a_watch_and_a_peers_write_still_counts(
    nc: NATS,
) -> None:
    """An instance alone pauses the watch of the limits bucket (it would only echo its own
    writes) and decides on its copy. A write by another instance meanwhile is not in the copy,
    so a decision allowed on it fails its compare-and-set, is decided again on the bucket, and
    is refused by name: the limit holds as with the watch."""
    kv = await open_bucket(nc, "lat_paused", ttl=3700, replicas=1)
    config = RateLimitConfig(**{**OPEN_LIMITS, "user_per_hour": 1})
    alone, peer = SharedRateLimitStore(kv, timeout=3.0), SharedRateLimitStore(kv, timeout=3.0)
    try:
        for store in (alone, peer):
            await store.start()
            await asyncio.wait_for(store.mirror.ready.wait(), 5)
        await alone.share(peers=False)
        assert alone.mirror.paused
        mine = RateLimiter(config, TriggersConfig(), store=alone)
        theirs = RateLimiter(config, TriggersConfig(), store=peer)
        assert (await mine.acquire(username="bob", rank=0, trigger=MENTION)).allowed
        assert (await theirs.acquire(username="alice", rank=0, trigger=MENTION)).allowed
        # The paused copy has bob's hit (written here), not alice's (written by the peer).
        assert alone.mirror.get("user.bob") != (b"", 0)
        assert alone.mirror.get("user.alice") == (b"", 0)
        first, recording = await mine.admit(username="alice", rank=0, trigger=MENTION)
        assert first.allowed  # the copy had room...
        assert recording is not None
        final = await recording
        assert (final.allowed, final.limit) == (False, "user_per_hour")  # ...the bucket not
        assert alone.conflicts == 1
        await alone.share(peers=True)  # a peer in the registry: the watch brings everything
        assert not alone.mirror.paused
        await asyncio.wait_for(alone.mirror.ready.wait(), 5)
        assert alone.mirror.get("user.alice") == peer.mirror.get("user.alice")
    finally:
        for store in (alone, peer):
            await store.stop()


async def test_the_limits_watch_pauses_while_alone_in_the_registry_and_follows_with_a_peer(
    nats_server: NatsServer, nc: NATS, tmp_path: Path
) -> None:
    """The heartbeat decides: alone in the registry, the watch of the limits bucket pauses;
    once another instance is registered, it follows the bucket again."""
    settings = settings_for(
        nats_server.url,
        tmp_path,
        service={"name": "pause"},
        cluster={"enabled": True, "heartbeat_seconds": 0.2, "peer_ttl_seconds": 1.0},
    )
    async with running(Service(settings)) as service:
        assert service.bot is not None
        cluster = service.bot.intake.admission.cluster
        assert cluster is not None
        assert cluster.shared_limits is not None
        mirror = cluster.shared_limits.mirror
        await eventually(lambda: mirror.paused)
        instances = await nc.jetstream().key_value("kryten_pause_instances")
        await instances.put("another", b'{"instance_id": "another"}')
        await eventually(lambda: not mirror.paused and mirror.ready.is_set())
        await eventually(lambda: mirror.paused, 5)  # its entry expired: alone again


async def test_an_instance_that_still_thinks_it_is_alone_and_a_joining_one_answer_each_once(
    nats_server: NatsServer, nc: NATS, tmp_path: Path
) -> None:
    """Instance A runs alone: it starts on each reply before its claim is answered. Instance
    B starts while mentions keep coming; until A's next heartbeat (4 s here) A still thinks it
    is alone while B claims the same mentions. Every mention is answered exactly once and has
    one response-log line over both, and A says nothing for a claim it lost late (with
    neither ``Job.claimed`` nor the hit's recording waiting for the claim, mentions are
    answered twice: checked)."""
    config = cluster_config(
        [nats_server.url],
        service={"name": "join"},
        cluster={"heartbeat_seconds": 4, "peer_ttl_seconds": 10},
    )
    instances = Instances(tmp_path, config, 1)
    try:
        await wait_instances(nc, 1, service="join")
        async with FakeBridge(nats_server.url, echo=False) as bridge:
            instances.add()
            sent = 0
            deadline = time.monotonic() + 60
            # Until B takes part (it answered one) and a while after: A's copy of the registry
            # says it is alone until its next beat.
            while time.monotonic() < deadline:
                await bridge.chat(f"user{sent % 50}", f"cynthia, question #{sent}?")
                sent += 1
                await asyncio.sleep(0.01)
                if sent % 50 == 0 and any(
                    line.get("event") == "reply_sent" for line in instances.log_lines(1)
                ):
                    break
            for i in range(sent, sent + 50):
                await bridge.chat(f"user{i % 50}", f"cynthia, question #{i}?")
                await asyncio.sleep(0.01)
            sent += 50
            stats = await wait_decided(nc, 2, triggered=0, service="join", answered=sent)
            await bridge.flush()
            answered = numbers(bridge.says())
        lines = [r for d in instances.dirs for r in read_log(d / "logs")]
        late = [e for e in instances.log_lines(0) if e.get("event") == "reply_not_claimed"]
    finally:
        assert instances.stop() == [0, 0]
    assert set(answered.values()) == {1}, "a mention was answered twice"
    assert len(answered) == sent
    ids = [line["correlation_id"] for line in lines]
    assert len(ids) == len(set(ids)) == sent, "a mention has no line or two"
    assert all(s.get("decision_answered", 0) > 0 for s in stats.values()), stats
    assert late, "A never lost a claim it had started on: the race did not happen"


async def test_a_queued_reply_whose_claim_was_lost_late_is_pushed_out_without_a_line(
    nats_server: NatsServer, nc: NATS, tmp_path: Path
) -> None:
    """One worker busy, a queue of one: alice's mention waits in the queue while its claim is
    lost (another instance answers it); carol's pushes it out. That instance writes alice's
    line, so this one writes none (no ``queue_overflow`` for a message it did not claim) and
    counts it once, as answered elsewhere."""
    settings = one_slow_worker(nats_server.url, tmp_path, "overflow", 500, queue_size=1)
    async with (
        running(Service(settings)) as service,
        FakeBridge(nats_server.url, echo=False) as bridge,
    ):
        await lost_behind_bob(service, bridge, nc, "overflow")
        bot, stats = service.bot, service.stats
        assert bot is not None
        await bridge.chat("carol", "cynthia, three?")
        await eventually(lambda: stats.decisions[Reason.ANSWERED] == 2)
        assert stats.decisions[Reason.QUEUE_OVERFLOW] == 0
    lines = read_log(tmp_path)
    assert sorted((r["username"], r["reason"]) for r in lines) == [
        ("bob", "answered"),
        ("carol", "answered"),
    ]


async def test_a_queued_reply_whose_claim_was_lost_late_gets_no_shutdown_line(
    nats_server: NatsServer, nc: NATS, tmp_path: Path
) -> None:
    """The bot stops while alice's mention, whose claim was lost, still waits behind bob's:
    the instance that won it writes her line, so this one writes no ``shutdown`` line and
    counts her once, as answered elsewhere."""
    # bob's reply outlasts the grace, so the queue is dropped with alice's job in it
    settings = one_slow_worker(
        nats_server.url, tmp_path, "stopping", 3000, shutdown_grace_seconds=0
    )
    async with (
        running(Service(settings)) as service,
        FakeBridge(nats_server.url, echo=False) as bridge,
    ):
        await lost_behind_bob(service, bridge, nc, "stopping")
        bot, stats = service.bot, service.stats
        assert bot is not None
    assert stats.decisions[Reason.ANSWERED_ELSEWHERE] == 1
    assert stats.decisions[Reason.SHUTDOWN] == 1  # bob's reply, cut by the stop
    assert [(r["username"], r["reason"]) for r in read_log(tmp_path)] == [("bob", "shutdown")]
    assert not bot.queue  # alice's job was dropped as the bot stopped, not answered


async def test_a_reply_in_progress_whose_claim_was_lost_late_gets_no_shutdown_line(
    nats_server: NatsServer, nc: NATS, tmp_path: Path
) -> None:
    """The bot stops while its worker still prepares alice's reply, whose claim was lost
    meanwhile: no ``shutdown`` line here (the winner writes hers), one decision in all."""
    settings = one_slow_worker(
        nats_server.url, tmp_path, "stopping2", 3000, shutdown_grace_seconds=0
    )
    async with (
        running(Service(settings)) as service,
        FakeBridge(nats_server.url, echo=False) as bridge,
    ):
        assert service.bot is not None
        bot, stats = service.bot, service.stats
        taken = await claimed_elsewhere(nc, "stopping2")
        await bridge.chat("alice", "cynthia, two?", correlation_id=taken)
        await eventually(lambda: stats.decisions[Reason.ANSWERED_ELSEWHERE] == 1)
        assert bot.in_flight == 1  # the worker is still preparing alice's reply
    assert stats.decisions[Reason.SHUTDOWN] == 0
    assert undecided(stats) == 0
    assert read_log(tmp_path) == []


async def test_a_queued_reply_whose_claim_was_lost_makes_no_provider_call(
    nats_server: NatsServer, nc: NATS, tmp_path: Path
) -> None:
    """Alice's mention waits behind bob's while its claim is lost: when the worker takes it,
    it stops before asking the model (the other instance answers her), and writes no line."""
    async with ScriptedOpenAIServer(drip(chunks=5, interval=0.2, text="Hello bob.")) as llm:
        settings = settings_for(
            nats_server.url,
            tmp_path,
            service={"name": "nocall"},
            cluster={"enabled": True},
            processing={"workers": 1},
            llm={
                "providers": {"api": {"type": "openai", "base_url": llm.base_url}},
                "default_provider": "api",
            },
        )
        async with (
            running(Service(settings)) as service,
            FakeBridge(nats_server.url, echo=False) as bridge,
        ):
            await lost_behind_bob(service, bridge, nc, "nocall")
            bot, stats = service.bot, service.stats
            assert bot is not None
            await eventually(
                lambda: (
                    stats.decisions[Reason.ANSWERED] == 1 and not bot.queue and bot.in_flight == 0
                )
            )
    assert len(llm.completions) == 1  # bob's only
    assert [(r["username"], r["reason"]) for r in read_log(tmp_path)] == [("bob", "answered")]


async def test_a_job_pushed_out_while_its_claim_is_in_flight_gets_the_claims_line(
    nats_server: NatsServer, nc: NATS, tmp_path: Path
) -> None:
    """The claims bucket is gone, so claims hang for ``claim_timeout_seconds``. Alice's job,
    queued with its claim in flight, is pushed out of the full queue by carol's from another
    channel (its own limits: its lane does not wait behind alice's hit): alice's line waits
    for her claim and says why she was not answered (``claim_failed``), not a
    ``queue_overflow`` written at once."""
    settings = settings_for(
        nats_server.url,
        tmp_path,
        service={"name": "inflight"},
        cluster={"enabled": True, "claim_timeout_seconds": 1.5},
        processing={"workers": 1, "queue_size": 1, "shutdown_grace_seconds": 0},
        channels=[
            {"domain": "cytu.be", "channel": "MyChannel"},
            {"domain": "cytu.be", "channel": "Other", "ratelimit": dict(OPEN_LIMITS)},
        ],
        llm={
            "providers": {"slow": {"type": "scripted", "latency_ms": 4000}},
            "default_provider": "slow",
        },
    )
    async with (
        running(Service(settings)) as service,
        FakeBridge(nats_server.url, echo=False) as bridge,
        FakeBridge(nats_server.url, channel="Other", echo=False) as other,
    ):
        assert service.bot is not None
        bot, stats = service.bot, service.stats
        await bridge.chat("bob", "cynthia, one?")
        await eventually(lambda: bot.in_flight == 1)  # the one worker is busy with bob
        await nc.jetstream().delete_stream("KV_kryten_inflight_claims")
        await bridge.chat("alice", "cynthia, two?")
        await eventually(lambda: len(bot.queue) == 1)  # queued, its claim in flight
        await other.chat("carol", "cynthia, three?")
        await eventually(lambda: stats.decisions[Reason.CLAIM_FAILED] >= 1, 10)
        assert stats.decisions[Reason.QUEUE_OVERFLOW] == 0
    alice = [r["reason"] for r in read_log(tmp_path) if r["username"] == "alice"]
    assert alice == ["claim_failed"]
