"""The reply worker: from a queued job to chat messages sent through the bridge.

For each :class:`~kryten_llm.pipeline.jobs.Job`: build the prompt, ask the provider manager
within the job's deadline, format the answer into CyTube-safe parts, validate it (one retry with
a corrective nudge if it fails), send the parts (or, in dry-run, only log them), and write one
:class:`~kryten_llm.pipeline.outcome.Outcome` saying what happened and why. When every provider
fails, a line from a fallback pool is said instead, if one has any (reason ``fallback``).

Streamed answers (``streaming.enabled`` and a provider that streams): parts are cut, checked
and sent while the model writes (:mod:`kryten_llm.bot.delivery`). Until the first part is
sent, everything is as above (a refused first part gets the corrective retry; a failure is
retried and failed over). Once a part is sent the answer cannot start again: a later failure
ends it where it is (``interrupted``, with the error), a refused later part ends it before that
part (with ``check``); both are still ``answered``, with the parts that were said.

Several workers (:meth:`kryten_llm.bot.assembly.Bot.work`) hand jobs to the responder of the
job's channel concurrently; the NATS callback never waits for them. A job that fails in any way
gets the outcome ``internal_error``, logged with its correlation id and counted, and the worker
takes the next job.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

import structlog

from kryten_llm.bot.delivery import Delivery, PartSink, stream_ended
from kryten_llm.bot.delivery import said as delivery_said
from kryten_llm.errors import ProviderError
from kryten_llm.llm.base import ChatMessage, Completion, CompletionRequest
from kryten_llm.pipeline.decisions import Reason
from kryten_llm.pipeline.formatter import FormattedReply, format_reply
from kryten_llm.pipeline.jobs import RefusedLate
from kryten_llm.pipeline.outcome import FirstAttempt, Outcome, Tokens
from kryten_llm.pipeline.stats import Count
from kryten_llm.pipeline.streaming import PartCutter

if TYPE_CHECKING:
    from kryten_llm.bot.responselog import ResponseLog
    from kryten_llm.bus.sender import ChatSender, SendResult
    from kryten_llm.config import Settings
    from kryten_llm.llm.manager import ProviderManager
    from kryten_llm.pipeline.fallback import FallbackPools
    from kryten_llm.pipeline.jobs import Job
    from kryten_llm.pipeline.prompt import PromptBuilder
    from kryten_llm.pipeline.state import ChannelState
    from kryten_llm.pipeline.stats import Flags, Stats
    from kryten_llm.pipeline.validator import ReplyValidator, Verdict

log = structlog.get_logger(__name__)

_FALLBACK_TRIES = 3  # pool lines tried when the validator rejects one (a recent repeat, say)


class Responder:
    """Produces and sends the reply for one job at a time (run several for concurrency)."""

    def __init__(
        self,
        settings: Settings,
        *,
        manager: ProviderManager,
        prompts: PromptBuilder,
        validator: ReplyValidator,
        sender: ChatSender | None,
        states: Mapping[str, ChannelState],
        response_log: ResponseLog,
        stats: Stats,
        flags: Flags,
        pools: FallbackPools | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings  # streaming: read per reply
        self._formatting = settings.formatting
        self._pools = pools
        self._bot = settings.bot.username
        # Speaks as the active personality: its names are the bot's own, its pool is used.
        personality = settings.personality
        self._personality = settings.active_personality
        self._bot_names = (personality.character_name, *personality.name_variations, self._bot)
        self._manager = manager
        self._prompts = prompts
        self._validator = validator
        self._retry = settings.validation.retry
        self._sender = sender
        self._states = states
        self._log = response_log
        self._stats = stats
        self._flags = flags
        self._clock = clock

    async def handle(self, job: Job) -> Outcome:
        """Reply to one job within its deadline; every outcome ends in one log line (but a
        message another instance answers after all: that instance writes it).

        Returns:
            What became of the job, as written to the response log.
        """
        structlog.contextvars.bind_contextvars(
            correlation_id=job.chat.envelope.correlation_id,
            channel=job.channel.channel,
            username=job.chat.username,
        )
        try:
            return await self._handle(job)
        finally:
            structlog.contextvars.clear_contextvars()

    async def _handle(self, job: Job) -> Outcome:
        outcome = Outcome.of(
            job.channel,
            job.chat,
            job.prompt.trigger,
            Reason.INTERNAL_ERROR,
            queued_ms=_ms(self._clock() - job.received_at),
        )
        if job.claim_said() is Reason.ANSWERED_ELSEWHERE:  # lost while it waited: no call
            return replace(outcome, reason=Reason.ANSWERED_ELSEWHERE)  # (counted already)
        delivery = self._delivery(job)
        try:
            async with asyncio.timeout(max(job.deadline - self._clock(), 0)):
                outcome = await self._reply(job, outcome, delivery)
        except RefusedLate as late:  # another instance took the last slot meanwhile
            outcome = late.applied_to(outcome, dry_run=self._flags.dry_run)
        except TimeoutError:
            said = tuple(delivery.parts[: delivery.sent]) or None
            outcome = replace(outcome, reason=Reason.DEADLINE, parts=said)
            log.warning("reply_deadline_exceeded")
        except asyncio.CancelledError:  # stopping: the line once the claim has answered
            job.after_claim(partial(self._settle, replace(outcome, reason=Reason.SHUTDOWN), job))
            raise
        except Exception as exc:  # a bug of ours: logged with its traceback, never fatal
            self._stats.totals[Count.WORKER_ERRORS] += 1
            outcome = replace(outcome, reason=Reason.INTERNAL_ERROR, error=repr(exc))
            log.exception("reply_failed")
        finally:
            await delivery.stop()
        # A claim still in flight decides last whether this instance writes the line.
        try:
            claim = await job.claim_answer()
        except asyncio.CancelledError:  # stopping: as above
            job.after_claim(partial(self._settle, outcome, job))
            raise
        return self._settle(outcome, job, claim)

    def _settle(self, outcome: Outcome, job: Job, claim: Reason | None) -> Outcome:
        """``outcome`` as the claim said: nothing written when another instance answers the
        message (that instance writes the line; the admission counted it), else the line."""
        if claim is Reason.ANSWERED_ELSEWHERE:
            return replace(outcome, reason=claim)
        return self._finish(replace(outcome, reason=claim) if claim else outcome, job)

    def _finish(self, outcome: Outcome, job: Job) -> Outcome:
        outcome = replace(outcome, total_ms=_ms(self._clock() - job.received_at))
        self._stats.decisions[outcome.reason] += 1
        return self._log.write(outcome)

    def _format(self, text: str, present: Collection[str]) -> FormattedReply:
        return format_reply(
            text, self._formatting, bot_names=self._bot_names, present_users=present
        )

    def _account(self, outcome: Outcome, completion: Completion) -> Outcome:
        """Name who answered; add this call's time, tokens and cost to the reply's totals.

        After a validator retry the outcome names the provider of the answer that was kept,
        and ``latency_ms``, ``usage`` and ``cost_usd`` cover both calls.
        """
        usage = outcome.usage
        if completion.usage is not None:
            call = Tokens(completion.usage.prompt_tokens, completion.usage.completion_tokens)
            usage = call if usage is None else usage + call
        return replace(
            outcome,
            provider=completion.provider,
            model=completion.model,
            fallback_from=tuple(completion.tried),
            cost_usd=_add(outcome.cost_usd, self._manager.cost(completion)),
            latency_ms=round((outcome.latency_ms or 0.0) + completion.latency_ms, 3),
            usage=usage,
        )

    def _delivery(self, job: Job) -> Delivery:
        """How this job's parts go out: to the bridge, or (dry-run) only into the history."""
        sender, dry_run = self._sender, self._flags.dry_run or self._sender is None
        state = self._states.get(job.channel.key)

        async def send(part: str) -> SendResult | None:
            await job.confirmed()  # the rate-limit hit is recorded before a word is said
            if dry_run or sender is None:
                if state is not None and not job.chat.is_pm:
                    state.add_chat(self._bot, part, 0, from_bot=True)
                return None
            if job.chat.is_pm:
                return await sender.pm(job.channel, job.chat.username, part)
            return await sender.say(job.channel, part)

        typing = self._settings.streaming.typing
        return Delivery(
            send, typing=typing, since=job.received_at, dry_run=dry_run, clock=self._clock
        )

    def _sink(self, key: str, present: Collection[str], delivery: Delivery) -> PartSink | None:
        """Where a streamed answer goes; None when streaming is off."""
        if not self._settings.streaming.enabled:
            return None
        cutter = PartCutter(self._formatting, bot_names=self._bot_names, present_users=present)
        return PartSink(cutter, self._validator, key, delivery)

    async def _ask(
        self,
        request: CompletionRequest,
        job: Job,
        present: Collection[str],
        sink: PartSink | None,
    ) -> tuple[Completion, FormattedReply]:
        """The manager's answer, formatted; one the formatter strips to nothing is a failure."""
        formatted: dict[str, FormattedReply] = {}

        def usable(completion: Completion) -> str | None:
            reply = formatted[completion.text] = self._format(completion.text, present)
            return None if reply.parts else "nothing left after formatting"

        chain = list(job.prompt.trigger.providers) or None
        if sink is None:
            completion = await self._manager.complete(
                request, deadline=job.deadline, chain=chain, accept=usable
            )
        else:
            completion = await self._manager.stream(
                request, deadline=job.deadline, chain=chain, accept=usable, sink=sink
            )
        reply = formatted.get(completion.text) or self._format(completion.text, present)
        return completion, reply

    async def _reply(self, job: Job, outcome: Outcome, delivery: Delivery) -> Outcome:
        request = self._prompts.build(job.prompt)
        key = job.channel.key
        state = self._states.get(key)
        present = state.users.keys() if state is not None else ()
        asking, retry_left = request, self._retry
        while True:
            sink = self._sink(key, present, delivery)
            try:
                completion, reply = await self._ask(asking, job, present, sink)
            except ProviderError as exc:
                if sink is not None and delivery.started:
                    return await self._cut_short(outcome, exc, sink, delivery, key)
                return await self._fall_back(job, outcome, exc, present, delivery)
            outcome = self._account(outcome, completion)
            if sink is not None and delivery.started:
                sink.finish(completion.text)
                return await self._streamed(outcome, sink, delivery, key)
            verdict, rejected = self._judge(sink, reply, key)
            if verdict.ok or not retry_left:
                break
            retry_left = False
            log.info("reply_invalid_retrying", check=verdict.reason, detail=verdict.detail)
            first = FirstAttempt(verdict.reason, completion.text[:500], completion.provider)
            outcome = replace(outcome, first_attempt=first)
            asking = CompletionRequest(
                messages=(
                    *request.messages,
                    ChatMessage("assistant", completion.text),
                    ChatMessage("user", self._validator.nudge(verdict)),
                )
            )
        if not verdict.ok:
            log.info("reply_invalid", check=verdict.reason, detail=verdict.detail)
            return replace(
                outcome,
                removed=reply.removed,
                reason=Reason.INVALID_REPLY,
                check=verdict.reason,
                detail=verdict.detail,
                rejected_parts=rejected,
            )
        return await self._send(
            outcome, reply, Reason.ANSWERED, delivery, remember=(reply.kept, key)
        )

    def _judge(
        self, sink: PartSink | None, reply: FormattedReply, key: str
    ) -> tuple[Verdict, tuple[str, ...]]:
        """The verdict on an answer nothing of which was sent, and the parts it concerns: the
        stream's refused first part, else the whole reply's check."""
        if sink is not None and sink.verdict is not None and sink.rejected is not None:
            return sink.verdict, (sink.rejected,)
        return self._validator.check(reply.kept, key), reply.parts

    async def _cut_short(
        self, outcome: Outcome, exc: ProviderError, sink: PartSink, delivery: Delivery, key: str
    ) -> Outcome:
        """A streamed answer failed after a part was sent: it ends with what was said."""
        log.warning("reply_stream_interrupted", provider=exc.provider, error=str(exc))
        outcome = replace(
            outcome,
            provider=outcome.provider or exc.provider,
            interrupted=True,
            error=str(exc),
            error_type=type(exc).__name__,
        )
        return await self._streamed(outcome, sink, delivery, key)

    async def _streamed(
        self, outcome: Outcome, sink: PartSink, delivery: Delivery, key: str
    ) -> Outcome:
        """The outcome of a streamed answer, once its last part is sent."""
        outcome, removed, truncated = stream_ended(outcome, sink, delivery)
        return await self._sent(
            outcome,
            delivery,
            Reason.ANSWERED,
            removed,
            truncated,
            remember=(" ".join(delivery.parts), key),
        )

    async def _fall_back(
        self,
        job: Job,
        outcome: Outcome,
        exc: ProviderError,
        present: Collection[str],
        delivery: Delivery,
    ) -> Outcome:
        """Every provider failed: say a line from a fallback pool, or report the failure.

        Pool lines were written by a model too, so they pass the validator's content checks
        (length, blocklist, prompt leaks; not repetition: a pool repeats by design, once per
        rotation); a rejected line is skipped for the next one.
        """
        log.warning("provider_failed", provider=exc.provider, error=str(exc))
        outcome = replace(
            outcome,
            reason=Reason.LLM_FAILED,
            provider=exc.provider,
            error=str(exc),
            error_type=type(exc).__name__,
        )
        if self._pools is None:
            return outcome
        for _ in range(_FALLBACK_TRIES):
            picked = self._pools.line_for(job.prompt.trigger, self._personality)
            if picked is None:
                return outcome
            pool, line = picked
            reply = self._format(line, present)
            verdict = (
                self._validator.check(reply.kept, job.channel.key, repetition=False)
                if reply.parts
                else None
            )
            if verdict is None or not verdict.ok:
                log.info("fallback_line_rejected", pool=pool, check=verdict and verdict.reason)
                continue
            log.info("reply_from_fallback_pool", pool=pool, error_type=type(exc).__name__)
            outcome = replace(outcome, fallback_pool=pool, provider=None)
            return await self._send(outcome, reply, Reason.FALLBACK, delivery)
        return outcome

    async def _send(
        self,
        outcome: Outcome,
        reply: FormattedReply,
        reason: Reason,
        delivery: Delivery,
        *,
        remember: tuple[str, str] | None = None,
    ) -> Outcome:
        """Send the parts (or only log them in dry-run); the outcome says which."""
        for part in reply.parts:
            delivery.put(part)
        return await self._sent(
            outcome, delivery, reason, reply.removed, reply.truncated, remember=remember
        )

    async def _sent(
        self,
        outcome: Outcome,
        delivery: Delivery,
        reason: Reason,
        removed: tuple[str, ...],
        truncated: bool,
        *,
        remember: tuple[str, str] | None = None,
    ) -> Outcome:
        """Wait until the parts are sent; the outcome with what was said, and when.

        ``remember``: (the reply's text, the validator's key) for the repetition check, kept
        once it was said: a reply refused late (its rate-limit hit not recorded) was never seen
        by the channel and is not remembered.
        """
        await delivery.drain()
        if remember is not None:
            self._validator.remember(*remember)
        return delivery_said(outcome, delivery, reason, removed, truncated)


def _add(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else a + b


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
