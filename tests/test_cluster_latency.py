"""A reply with the cluster on, as fast as one alone: the claim answered while the reply is
prepared, the shared limits in two KV values per reply.

Real nats-server (JetStream) throughout; the bot runs in-process where its counters are read.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from nats.aio.client import Client as NATS

from kryten_llm.bot.conversation import Conversation
from kryten_llm.pipeline.decisions import Reason
from kryten_llm.service import Service
from tests.bridge import FakeBridge
from tests.conftest import eventually, read_log, running, settings_for
from tests.natsserver import NatsServer


def chat_envelope(bridge: FakeBridge, username: str, text: str, correlation_id: str) -> bytes:
    """A ``chatMsg`` as the bridge sends it, with a correlation id chosen by the test."""
    return json.dumps(
        {
            "event_name": "chatMsg",
            "payload": {
                "username": username,
                "msg": text,
                "meta": {},
                "time": int(time.time() * 1000),
            },
            "channel": bridge.channel,
            "domain": bridge.domain,
            "timestamp": datetime.now(UTC).isoformat(),
            "correlation_id": correlation_id,
        }
    ).encode()


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
        await bridge.publish_raw("chatmsg", chat_envelope(bridge, "alice", "cynthia, hi?", taken))
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
