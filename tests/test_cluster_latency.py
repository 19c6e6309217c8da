"""A reply with the cluster on, as fast as one alone: the claim answered while the reply is
prepared, the shared limits in two KV values per reply.

Real nats-server (JetStream) throughout; the bot runs in-process where its counters are read.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from nats.aio.client import Client as NATS

from kryten_llm.bot.conversation import Conversation
from kryten_llm.cluster.kv import open_bucket
from kryten_llm.cluster.kvstore import SharedRateLimitStore
from kryten_llm.config import RateLimitConfig, TriggersConfig
from kryten_llm.pipeline.decisions import Reason, TriggerMatch
from kryten_llm.pipeline.ratelimit import RateLimiter
from kryten_llm.service import Service
from tests.bridge import FakeBridge
from tests.conftest import OPEN_LIMITS, eventually, read_log, running, settings_for
from tests.natsserver import NatsServer

MENTION = TriggerMatch("mention", "mention")


def pending_replies(conversation: Conversation) -> int:
    """Replies holding room in the share of chat, over every channel."""
    return sum(talk.share.pending for talk in conversation._talks.values())


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
        cluster = service.bot.intake.cluster
        assert cluster is not None
        assert cluster.alone
        claims = await nc.jetstream().key_value("kryten_late_claims")
        taken = str(uuid.uuid4())
        await claims.create(taken, b"another-instance")
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
        assert alone.mirror.get("u.bob") != (b"", 0)
        assert alone.mirror.get("u.alice") == (b"", 0)
        first, recording = await mine.admit(username="alice", rank=0, trigger=MENTION)
        assert first.allowed  # the copy had room...
        assert recording is not None
        final = await recording
        assert (final.allowed, final.limit) == (False, "user_per_hour")  # ...the bucket not
        assert alone.conflicts == 1
        await alone.share(peers=True)  # a peer in the registry: the watch brings everything
        assert not alone.mirror.paused
        await asyncio.wait_for(alone.mirror.ready.wait(), 5)
        assert alone.mirror.get("u.alice") == peer.mirror.get("u.alice")
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
        cluster = service.bot.intake.cluster
        assert cluster is not None
        assert cluster.shared_limits is not None
        mirror = cluster.shared_limits.mirror
        await eventually(lambda: mirror.paused)
        instances = await nc.jetstream().key_value("kryten_pause_instances")
        await instances.put("another", b'{"instance_id": "another"}')
        await eventually(lambda: not mirror.paused and mirror.ready.is_set())
        await eventually(lambda: mirror.paused, 5)  # its entry expired: alone again
