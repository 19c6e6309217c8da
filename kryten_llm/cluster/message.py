"""The claim of one message, made once, when the admission asks for it.

Among several instances (:class:`~kryten_llm.cluster.coordinator.Coordinator`) a triggered
message is claimed before it is answered (:mod:`kryten_llm.cluster.claim`). With peers the
admission waits for the answer; alone in the registry it sends the claim with the rate-limit
hit and the reply is prepared while JetStream answers (nothing is said before it is won). This
object holds the one claim of a message between those steps; it sits apart from the claims
store because it asks the coordinator, which owns the store.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog

from kryten_llm.pipeline.decisions import Reason

if TYPE_CHECKING:
    from kryten_llm.bus.events import ChatEvent
    from kryten_llm.cluster.coordinator import Coordinator
    from kryten_llm.config import ChannelConfig

log = structlog.get_logger(__name__)


_UNASKED = object()  # a claim not made yet


class MessageClaim:
    """The claim of one message: made at most once, when the limiter or the admission asks
    (waited for at once with peers; alone, sent with the hit and answered while the reply is
    prepared). Its answer is a reason or ``None``, never an exception: a claim that fails
    in a way it does not name is ``claim_failed``."""

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
        try:
            return await self._cluster.decide(self._channel, self._chat)
        except Exception as exc:  # the one place a claim's failure is read: never raised on
            log.warning("claim_failed", error=str(exc) or repr(exc))
            return Reason.CLAIM_FAILED
