"""Sending one reply's parts while the answer is still being written.

Two pieces of the reply path (:mod:`kryten_llm.bot.responder`), apart from the responder so
that each stays small:

- :class:`Delivery` sends a reply's parts in order from a task of its own, so that reading a
  streamed answer never waits for the sender's pacing. It keeps the humanised pacing
  (``streaming.typing``: each part waits until a person could have typed it, counted from the
  message's arrival for the first part and from the previous part for the next) and the time
  each part went out, for ``first_part_ms`` and ``last_part_ms`` in the response log.
- :class:`PartSink` is what the provider manager streams an answer into
  (:class:`~kryten_llm.llm.streaming.TextSink`): it cuts parts with
  :class:`~kryten_llm.pipeline.streaming.PartCutter`, checks each one with
  :meth:`~kryten_llm.pipeline.validator.PartChecks.admit` (one per answer), and hands it to the
  delivery; a refused part stops the answer there.

:func:`said` turns what a delivery sent into the reply's outcome, and :func:`stream_ended` reads
what a streamed answer's sink and cutter have to add to it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import structlog

from kryten_llm.pipeline.decisions import Reason

if TYPE_CHECKING:
    from kryten_llm.bus.sender import SendResult
    from kryten_llm.config import TypingConfig
    from kryten_llm.pipeline.outcome import Outcome
    from kryten_llm.pipeline.streaming import PartCutter
    from kryten_llm.pipeline.validator import ReplyValidator, Verdict

Send = Callable[[str], Awaitable["SendResult | None"]]

log = structlog.get_logger(__name__)


class Delivery:
    """One reply's parts, sent in order by a task of its own.

    Args:
        send: sends one part (``None`` back when nothing was published: dry-run).
        typing: the humanised pacing, read now for this reply.
        since: when the message arrived (monotonic): typing the first part starts then.
        dry_run: nothing is published (``send`` only records): the outcome says dry-run.
        clock: monotonic seconds.
        sleep: waits (tests pass a fast one).
    """

    def __init__(
        self,
        send: Send,
        *,
        typing: TypingConfig,
        since: float,
        dry_run: bool = False,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._send = send
        self._typing = typing
        self._since = self._ready_from = since
        self.dry_run = dry_run
        self._clock = clock
        self._sleep = sleep
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.parts: list[str] = []  # handed over, in order
        self.results: list[SendResult] = []
        self.sent = 0  # parts sent so far
        self._first_at: float | None = None
        self._last_at: float | None = None

    @property
    def first_part_ms(self) -> float | None:
        """Milliseconds from the message's arrival to the first part sent."""
        return _ms(self._first_at - self._since) if self._first_at is not None else None

    @property
    def last_part_ms(self) -> float | None:
        """Milliseconds from the message's arrival to the last part sent."""
        return _ms(self._last_at - self._since) if self._last_at is not None else None

    @property
    def started(self) -> bool:
        """Some part was handed over: it will be said, whatever happens to the answer."""
        return bool(self.parts)

    def put(self, part: str) -> None:
        """Send ``part`` after the parts handed over before it."""
        self.parts.append(part)
        self._queue.put_nowait(part)
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def drain(self) -> None:
        """Wait until every part handed over is sent.

        Raises:
            Exception: what sending a part raised.
        """
        if self._task is None:
            return
        if not self._task.done():
            self._queue.put_nowait(None)
        await self._task

    async def stop(self) -> None:
        """Give up what is not sent yet (a deadline, a shutdown, a failure)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            # Its end (cancelled, or failed) is expected; a cancel aimed at us still propagates.
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while (part := await self._queue.get()) is not None:
            wait = self._ready_from + self._typing.seconds_for(part) - self._clock()
            if wait > 0:
                await self._sleep(wait)
            result = await self._send(part)
            now = self._ready_from = self._clock()
            if result is not None:
                self.results.append(result)
            self.sent += 1
            if self._first_at is None:
                self._first_at = now
            self._last_at = now


class PartSink:
    """Cuts, checks and delivers a streamed answer as it is written.

    Args:
        cutter: cuts the answer so far into parts.
        validator: checks each part before it is sent.
        channel: the channel's key (the validator remembers replies per channel).
        delivery: sends the parts that pass.
    """

    def __init__(
        self, cutter: PartCutter, validator: ReplyValidator, channel: str, delivery: Delivery
    ) -> None:
        self.cutter = cutter
        self._checks = validator.parts(channel)
        self._delivery = delivery
        self.verdict: Verdict | None = None  # why a part was refused
        self.rejected: str | None = None  # the part refused

    @property
    def committed(self) -> bool:
        """A part was handed over to be sent: the answer cannot be asked again."""
        return self._delivery.started

    def take(self, text: str) -> bool:
        """The answer so far: send what is ready; False when nothing more will be sent."""
        if self.verdict is not None or self.cutter.done:
            return False
        for part in self.cutter.ready(text):
            if not self._pass(part):
                return False
        return not self.cutter.done

    def finish(self, text: str) -> None:
        """The answer is complete: send the parts left (nothing after a refused part)."""
        if self.verdict is None:
            for part in self.cutter.rest(text):
                if not self._pass(part):
                    return

    def _pass(self, part: str) -> bool:
        verdict = self._checks.admit(part)
        if not verdict.ok:
            self.verdict, self.rejected = verdict, part
            return False
        self._delivery.put(part)
        return True


def said(
    outcome: Outcome,
    delivery: Delivery,
    reason: Reason,
    removed: tuple[str, ...],
    truncated: bool,
) -> Outcome:
    """``outcome`` with the parts ``delivery`` sent (drained), when, and the bridge's answers;
    ``dry_run`` when they only went into the history."""
    outcome = replace(
        outcome,
        removed=removed,
        parts=tuple(delivery.parts),
        truncated=truncated,
        first_part_ms=delivery.first_part_ms,
        last_part_ms=delivery.last_part_ms,
    )
    if delivery.dry_run:
        log.info("reply_dry_run", parts=len(delivery.parts))
        return replace(outcome, reason=Reason.DRY_RUN, dry_run=True)
    acks = [r.ack for r in delivery.results if r.ack not in ("not_requested", "accepted")]
    log.info("reply_sent", parts=len(delivery.parts), provider=outcome.provider)
    return replace(
        outcome,
        reason=reason,
        request_ids=tuple(r.request_id for r in delivery.results),
        ack=acks[-1] if acks else None,
    )


def stream_ended(
    outcome: Outcome, sink: PartSink, delivery: Delivery
) -> tuple[Outcome, tuple[str, ...], bool]:
    """A streamed answer whose last part is sent: ``outcome`` marked streamed (with the check
    that refused a later part, if one did), what the cutter removed, and whether it cut."""
    cutter = sink.cutter
    if sink.verdict is not None:
        log.info("reply_part_refused", check=sink.verdict.reason, detail=sink.verdict.detail)
        outcome = replace(
            outcome,
            check=sink.verdict.reason,
            detail=sink.verdict.detail,
            rejected_parts=(sink.rejected,) if sink.rejected else None,
        )
    if cutter.unstable:
        log.warning("reply_stream_unstable", parts=len(delivery.parts))
    removed = (*cutter.removed, *(("mass_mention",) if cutter.mass_mention else ()))
    return replace(outcome, streamed=True), removed, cutter.truncated


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
