"""Exactly one instance answers each message: the first to create its claim key wins.

Every instance sees every event (the bridge publishes to all subscribers) and keeps full
channel state; when a message would be answered, each instance tries ``create`` on the KV key of
the message's correlation id. JetStream accepts exactly one create per key, across machines and
across the nodes of a NATS cluster, so exactly one instance goes on to answer. The value is the
winner's instance id: when the acknowledgement of our own create was lost (a node failing over)
and the retry finds the key taken, reading it back tells us whether we are the winner.

While JetStream cannot be reached the claim is retried for ``claim_timeout_seconds``; after that
the message is not answered here (:attr:`ClaimResult.FAILED`): at most once, never twice.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import TYPE_CHECKING

import structlog
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from kryten_llm.cluster.kv import retrying, safe_key
from kryten_llm.errors import ClusterError

if TYPE_CHECKING:
    from nats.js.kv import KeyValue

    from kryten_llm.bus.events import ChatEvent
    from kryten_llm.cluster.coordinator import Coordinator
    from kryten_llm.config import ChannelConfig
    from kryten_llm.pipeline.decisions import Reason

log = structlog.get_logger(__name__)


class ClaimResult(StrEnum):
    WON = "won"  # this instance answers
    LOST = "lost"  # another instance answers
    FAILED = "failed"  # JetStream unreachable for the whole timeout: nobody here answers


class Claims:
    """Create-if-absent claims in one KV bucket.

    Args:
        kv: the claims bucket (its TTL is how long a claim is remembered).
        instance_id: written as the claim's value.
        timeout_seconds: how long to keep retrying while JetStream fails.
    """

    def __init__(
        self,
        kv: KeyValue,
        instance_id: str,
        timeout_seconds: float,
    ) -> None:
        self._kv = kv
        self._me = instance_id.encode()
        self._timeout = timeout_seconds
        self.failures = 0  # claims given up on (JetStream unreachable)

    async def claim(self, message_key: str) -> ClaimResult:
        """Claim the message ``message_key`` (a correlation id) for this instance."""
        key = safe_key(message_key)
        try:
            return await retrying(lambda: self._try(key), self._timeout, what="claim")
        except ClusterError as exc:
            self.failures += 1
            log.warning(
                "claim_failed",
                key=key,
                error=str(exc),
                detail="JetStream unreachable: not answered here (never twice)",
            )
            return ClaimResult.FAILED

    async def _try(self, key: str) -> ClaimResult:
        try:
            await self._kv.create(key, self._me)
        except KeyWrongLastSequenceError:
            try:
                entry = await self._kv.get(key)
            except KeyNotFoundError:  # expired between the two calls: try again
                return await self._try(key)
            return ClaimResult.WON if entry.value == self._me else ClaimResult.LOST
        return ClaimResult.WON


_UNASKED = object()  # a claim not made yet


class MessageClaim:
    """The claim of one message: made at most once, when the limiter or the admission asks
    (waited for at once with peers; alone, sent with the hit and answered while the reply is
    prepared)."""

    __slots__ = ("_answer", "_channel", "_chat", "_cluster", "_reason")

    def __init__(self, cluster: Coordinator, channel: ChannelConfig, chat: ChatEvent) -> None:
        self._cluster = cluster
        self._channel = channel
        self._chat = chat
        self._reason: object = _UNASKED
        self._answer: asyncio.Future[Reason | None] | None = None

    async def won(self) -> bool:
        """Make the claim and wait for its answer: whether this instance answers."""
        return await self.answer() is None

    def send(self) -> asyncio.Future[bool]:
        """Make the claim now, answered while the reply is prepared: whether it is won."""
        answer = self._answer = asyncio.ensure_future(self._decide(after_writes=True))
        won: asyncio.Future[bool] = answer.get_loop().create_future()

        def answered(done: asyncio.Future[Reason | None]) -> None:
            if won.done():  # the recording waiting for it was cancelled
                return
            if done.cancelled():
                won.cancel()
            elif (failure := done.exception()) is not None:
                won.set_exception(failure)
            else:
                won.set_result(done.result() is None)

        answer.add_done_callback(answered)
        return won

    @property
    def pending(self) -> asyncio.Future[Reason | None] | None:
        """The claim sent with :meth:`send` while it is not answered yet."""
        answer = self._answer
        return answer if answer is not None and not answer.done() else None

    async def answer(self) -> Reason | None:
        """Why another instance answers the message, or ``None`` (this one does); the claim
        is made now unless it was made before."""
        if self._answer is not None:
            return await self._answer
        if self._reason is _UNASKED:
            self._reason = await self._decide()
        return self._reason  # type: ignore[return-value]  # a Reason or None once asked

    async def _decide(self, *, after_writes: bool = False) -> Reason | None:
        if after_writes:
            # One turn of the loop: the hit's writes, queued meanwhile by the recording task,
            # and the claim then leave in one write to the socket (the claim first in it).
            await asyncio.sleep(0)
        return await self._cluster.decide(self._channel, self._chat)
