"""The hand-over between the NATS callback and the reply workers.

A :class:`Job` is one triggered, rate-limit-approved message with everything the worker needs
(a snapshot of the context taken at enqueue time). :class:`JobQueue` is bounded; when it is
full the **oldest** waiting job is dropped to make room, because in a live chat a late answer to
an old message is worth less than a prompt answer to a new one. Dropped jobs are returned to the
caller so that they are logged, never lost silently.

With peers, an instance claims a message only when it has a worker free for it
(:meth:`JobQueue.hold`): the claim is a race, and the instance with room should win it, so the
work spreads over the instances by what each can take, not by who is a round trip ahead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import structlog

from kryten_llm.errors import KrytenLLMError
from kryten_llm.pipeline.decisions import Reason
from kryten_llm.pipeline.ratelimit import NOT_CLAIMED

if TYPE_CHECKING:
    from kryten_llm.bus.events import ChatEvent
    from kryten_llm.config import ChannelConfig
    from kryten_llm.pipeline.decisions import RateDecision
    from kryten_llm.pipeline.outcome import Outcome
    from kryten_llm.pipeline.prompt import PromptInput

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Job:
    """One reply to produce.

    Attributes:
        channel: where the message came from (and where the reply goes).
        chat: the triggering message.
        prompt: the context snapshot for the prompt builder.
        received_at: ``time.monotonic()`` when the event was parsed.
        deadline: ``time.monotonic()`` by which the reply must be sent or abandoned.
        admitted: while the rate-limit hit is still being recorded in JetStream KV (the reply
            is prepared meanwhile), the final rate-limit decision; nothing is said before it
            is known, and nothing at all when it is a refusal.
        claimed: while the message's claim is still in flight (an instance alone in the
            registry prepares the reply meanwhile), why another instance answers it or
            ``None`` (this one does); nothing is said before it is known.
    """

    channel: ChannelConfig
    chat: ChatEvent
    prompt: PromptInput
    received_at: float
    deadline: float
    admitted: Awaitable[RateDecision] | None = None
    claimed: asyncio.Future[Reason | None] | None = None

    async def confirmed(self) -> None:
        """Return once the reply may be said (at once unless ``claimed`` or ``admitted`` is
        pending).

        Raises:
            RefusedLate: the claim was lost or the hit could not be recorded: nothing of this
                reply may be said.
        """
        if (elsewhere := await self.claim_answer()) is not None:
            raise RefusedLate(NOT_CLAIMED, elsewhere)
        if self.admitted is not None:
            # shielded: a deadline ending the reply must not cut the recording half way
            decision = await asyncio.shield(self.admitted)
            if not decision.allowed:
                raise RefusedLate(decision)

    async def claim_answer(self) -> Reason | None:
        """Why another instance answers the message, or ``None`` (this one does), once the
        claim is answered (at once unless ``claimed`` is pending); a cancelled claim is
        ``claim_failed``."""
        claimed = self.claimed
        if claimed is None:
            return None
        try:
            return await asyncio.shield(claimed)  # a deadline must not cut the claim
        except asyncio.CancelledError:
            if claimed.cancelled():  # the claim was cancelled, not the one waiting for it
                return Reason.CLAIM_FAILED
            raise

    def claim_said(self) -> Reason | None:
        """What the claim said, without waiting: why another instance answers the message
        (``claim_failed`` when it was cancelled), or ``None`` (this one does, no claim was
        made, or it is still in flight)."""
        claimed = self.claimed
        if claimed is None or not claimed.done():
            return None
        return Reason.CLAIM_FAILED if claimed.cancelled() else claimed.result()

    def after_claim(self, then: Callable[[Reason | None], object]) -> None:
        """Call ``then`` with :meth:`claim_said` once the claim has answered (at once when it
        has, or when no claim was made): for a job ended without waiting for it (shutdown)."""
        claimed = self.claimed
        if claimed is None or claimed.done():
            then(self.claim_said())
        else:
            claimed.add_done_callback(lambda _: then(self.claim_said()))


class RefusedLate(KrytenLLMError):
    """A job's reply may not be said after all: another instance took the last slot
    meanwhile or JetStream failed (its outcome is ``rate_limited`` with the limit named here),
    or the claim decided late that another instance answers the message (``answered_elsewhere``:
    that instance writes its line) or could not be made (``claim_failed``)."""

    def __init__(self, decision: RateDecision, reason: Reason = Reason.RATE_LIMITED) -> None:
        super().__init__(decision.limit)
        self.decision = decision
        self.reason = reason

    def applied_to(self, outcome: Outcome, *, dry_run: bool) -> Outcome:
        """``outcome`` as this refusal says: ``rate_limited``, by which limit, free when (or
        the claim's reason)."""
        if self.reason is not Reason.RATE_LIMITED:
            log.info("reply_not_claimed", reason=self.reason.value, late=True)
            return replace(outcome, reason=self.reason)
        log.info("reply_rate_limited", limit=self.decision.limit, late=True)
        return outcome.rate_limited(self.decision, dry_run=dry_run)


class JobQueue:
    """A bounded FIFO of jobs with a drop-oldest overflow policy."""

    def __init__(self, capacity: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._queue: asyncio.Queue[Job] = asyncio.Queue(capacity)
        self._clock = clock
        self._progress_at = clock()  # last time the queue was empty or a job was taken
        self._unfinished = 0  # jobs put and not finished, plus places held (see hold())
        self._changed = asyncio.Event()  # set, and replaced, whenever _unfinished drops

    def stalled_seconds(self) -> float:
        """How long jobs have waited with none taken (0 while empty): a liveness signal."""
        if self._queue.empty():
            return 0.0
        return self._clock() - self._progress_at

    def __len__(self) -> int:
        return self._queue.qsize()

    @property
    def capacity(self) -> int:
        return self._queue.maxsize

    @property
    def unfinished(self) -> int:
        """Jobs put and not yet finished (waiting or being answered), plus places held."""
        return self._unfinished

    async def hold(self, limit: int) -> None:
        """Wait until fewer than ``limit`` jobs are unfinished (places held included), then
        hold a place: fill it with ``put(job, held=True)`` or give it back with
        :meth:`unhold`."""
        while self._unfinished >= limit:
            await self._changed.wait()
        self._unfinished += 1

    def unhold(self) -> None:
        """Give back a place taken with :meth:`hold` and not filled."""
        self._finished(1)

    def put(self, job: Job, *, held: bool = False) -> Job | None:
        """Add ``job`` (into a place taken with :meth:`hold` if ``held``); returns the job
        dropped to make room, if any."""
        dropped = None
        if self._queue.empty():
            self._progress_at = self._clock()
        if self._queue.full():
            dropped = self._queue.get_nowait()
            self._queue.task_done()
            self._finished(1)
        self._queue.put_nowait(job)
        if not held:
            self._unfinished += 1
        return dropped

    async def get(self) -> Job:
        """Wait for the next job; call :meth:`done` when it is finished."""
        job = await self._queue.get()
        self._progress_at = self._clock()
        return job

    def done(self) -> None:
        """Mark one job taken with :meth:`get` as finished."""
        self._queue.task_done()
        self._finished(1)

    def drain(self) -> list[Job]:
        """Remove and return every waiting job (used at shutdown)."""
        jobs = []
        while not self._queue.empty():
            jobs.append(self._queue.get_nowait())
            self._queue.task_done()
        self._finished(len(jobs))
        return jobs

    def _finished(self, count: int) -> None:
        if count:
            self._unfinished -= count
            self._changed.set()  # wakes every hold() waiting; each checks the room again
            self._changed = asyncio.Event()

    async def wait_idle(self) -> None:
        """Wait until every job put has been finished or drained."""
        await self._queue.join()
