"""The reply worker: from a queued job to chat messages sent through the bridge.

For each :class:`~kryten_llm.pipeline.jobs.Job`: build the prompt, ask the provider manager
within the job's deadline, format the answer into CyTube-safe parts, validate it (one retry with
a corrective nudge if it fails), send the parts (or, in dry-run, only log them), and write one
response-log line saying what happened and why. When every provider fails, a line from a
fallback pool is said instead, if one has any (reason ``fallback``). Several workers
run this concurrently; the NATS callback never waits for them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import structlog

from kryten_llm.errors import ProviderError
from kryten_llm.intake import channel_key
from kryten_llm.llm.base import ChatMessage, Completion, CompletionRequest
from kryten_llm.pipeline.decisions import Reason
from kryten_llm.pipeline.formatter import FormattedReply, format_reply
from kryten_llm.records import chat_record

if TYPE_CHECKING:
    from kryten_llm.bus.sender import ChatSender
    from kryten_llm.config import PersonalityConfig, Settings
    from kryten_llm.intake import ChannelContext
    from kryten_llm.llm.manager import ProviderManager
    from kryten_llm.pipeline.fallback import FallbackPools
    from kryten_llm.pipeline.jobs import Job, JobQueue
    from kryten_llm.pipeline.prompt import PromptBuilder
    from kryten_llm.pipeline.validator import ReplyValidator
    from kryten_llm.responselog import ResponseLog
    from kryten_llm.stats import Flags, Stats

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
        channels: dict[str, ChannelContext],
        response_log: ResponseLog,
        stats: Stats,
        flags: Flags,
        pools: FallbackPools | None = None,
    ) -> None:
        self._formatting = settings.formatting
        self._pools = pools
        self._personality = settings.active_personality
        self._bot = settings.bot.username
        personality = settings.personality
        self._bot_names = (personality.character_name, *personality.name_variations, self._bot)
        self._manager = manager
        self._prompts = prompts
        self._validator = validator
        self._retry = settings.validation.retry
        self._sender = sender
        self._channels = channels
        self._log = response_log
        self._stats = stats
        self._flags = flags
        self.in_flight = 0

    def use_personality(self, name: str, personality: PersonalityConfig) -> None:
        """Speak as ``name``: its names are the bot's own, its fallback pool is used."""
        self._personality = name
        self._bot_names = (personality.character_name, *personality.name_variations, self._bot)

    async def run(self, queue: JobQueue) -> None:
        """Take jobs from ``queue`` until cancelled."""
        while True:
            job = await queue.get()
            self.in_flight += 1
            try:
                await self.handle(job)
            finally:
                self.in_flight -= 1
                queue.done()

    async def handle(self, job: Job) -> None:
        """Reply to one job within its deadline; every outcome ends in one log record."""
        structlog.contextvars.bind_contextvars(
            correlation_id=job.chat.envelope.correlation_id,
            channel=job.channel.channel,
            username=job.chat.username,
        )
        record = chat_record(job.channel, job.chat, job.prompt.trigger)
        record["queued_ms"] = _ms(time.monotonic() - job.received_at)
        try:
            remaining = job.deadline - time.monotonic()
            async with asyncio.timeout(max(remaining, 0)):
                await self._reply(job, record)
        except TimeoutError:
            record |= {"answered": False, "reason": Reason.DEADLINE.value}
            log.warning("reply_deadline_exceeded")
        except asyncio.CancelledError:
            record |= {"answered": False, "reason": Reason.SHUTDOWN.value}
            raise
        except Exception as exc:  # a bug of ours: logged with its traceback, never fatal
            record |= {"answered": False, "reason": Reason.INTERNAL_ERROR.value, "error": repr(exc)}
            log.exception("reply_failed")
        finally:
            record["total_ms"] = _ms(time.monotonic() - job.received_at)
            self._stats.inc(f"decision_{record.get('reason', 'unknown')}")
            self._log.write(record)
            structlog.contextvars.clear_contextvars()

    def _account(self, record: dict[str, Any], completion: Completion) -> None:
        """Name who answered; add this call's time, tokens and cost to the reply's totals.

        After a validator retry the record names the provider of the answer that was kept,
        and ``latency_ms``, ``usage`` and ``cost_usd`` cover both calls.
        """
        usage = record.get("usage")
        if completion.usage is not None:
            usage = {
                "prompt_tokens": (usage or {}).get("prompt_tokens", 0)
                + completion.usage.prompt_tokens,
                "completion_tokens": (usage or {}).get("completion_tokens", 0)
                + completion.usage.completion_tokens,
            }
        record |= {
            "provider": completion.provider,
            "model": completion.model,
            "fallback_from": list(completion.tried),
            "cost_usd": _add(record.get("cost_usd"), self._manager.cost(completion)),
            "latency_ms": round(record.get("latency_ms", 0.0) + completion.latency_ms, 3),
            "usage": usage,
        }

    def _format(self, text: str, present: Collection[str]) -> FormattedReply:
        return format_reply(
            text, self._formatting, bot_names=self._bot_names, present_users=present
        )

    async def _reply(self, job: Job, record: dict[str, Any]) -> None:
        request = self._prompts.build(job.prompt)
        chain = list(job.prompt.trigger.providers) or None
        key = channel_key(job.channel.domain, job.channel.channel)
        context = self._channels.get(key)
        present = context.state.users.keys() if context is not None else ()
        try:
            completion = await self._manager.complete(request, deadline=job.deadline, chain=chain)
        except ProviderError as exc:
            await self._fall_back(job, record, exc, present)
            return
        self._account(record, completion)
        reply = self._format(completion.text, present)
        verdict = self._validator.check(reply.kept, key) if reply.parts else None
        if verdict is not None and not verdict.ok and self._retry:
            log.info("reply_invalid_retrying", check=verdict.reason, detail=verdict.detail)
            record["first_attempt"] = {
                "rejected": verdict.reason,
                "text": completion.text[:500],
                "provider": completion.provider,
            }
            retry = CompletionRequest(
                messages=(
                    *request.messages,
                    ChatMessage("assistant", completion.text),
                    ChatMessage("user", self._validator.nudge(verdict)),
                )
            )
            try:
                completion = await self._manager.complete(retry, deadline=job.deadline, chain=chain)
            except ProviderError as exc:
                await self._fall_back(job, record, exc, present)
                return
            self._account(record, completion)
            reply = self._format(completion.text, present)
            verdict = self._validator.check(reply.kept, key) if reply.parts else None
        record["removed"] = list(reply.removed)
        if not reply.parts:
            record |= {"answered": False, "reason": Reason.EMPTY_REPLY.value, "parts": []}
            log.info("reply_empty", raw_length=len(completion.text))
            return
        if verdict is not None and not verdict.ok:
            record |= {
                "answered": False,
                "reason": Reason.INVALID_REPLY.value,
                "check": verdict.reason,
                "detail": verdict.detail,
                "rejected_parts": list(reply.parts),
            }
            log.info("reply_invalid", check=verdict.reason, detail=verdict.detail)
            return
        self._validator.remember(reply.kept, key)
        await self._send(job, record, reply, Reason.ANSWERED)

    async def _fall_back(
        self, job: Job, record: dict[str, Any], exc: ProviderError, present: Collection[str]
    ) -> None:
        """Every provider failed: say a line from a fallback pool, or log the failure.

        Pool lines were written by a model too, so they pass the validator's content checks
        (length, blocklist, prompt leaks; not repetition: a pool repeats by design, once per
        rotation); a rejected line is skipped for the next one.
        """
        _provider_failed(record, exc)
        if self._pools is None:
            return
        key = channel_key(job.channel.domain, job.channel.channel)
        for _ in range(_FALLBACK_TRIES):
            picked = self._pools.line_for(job.prompt.trigger, self._personality)
            if picked is None:
                return
            pool, line = picked
            reply = self._format(line, present)
            verdict = (
                self._validator.check(reply.kept, key, repetition=False) if reply.parts else None
            )
            if verdict is None or not verdict.ok:
                log.info("fallback_line_rejected", pool=pool, check=verdict and verdict.reason)
                continue
            record |= {"fallback_pool": pool, "provider": None}
            log.info("reply_from_fallback_pool", pool=pool, error_type=type(exc).__name__)
            await self._send(job, record, reply, Reason.FALLBACK)
            return

    async def _send(
        self, job: Job, record: dict[str, Any], reply: FormattedReply, reason: Reason
    ) -> None:
        """Send the parts (or only log them in dry-run); the record says which."""
        record["parts"] = list(reply.parts)
        record["truncated"] = reply.truncated
        if self._flags.dry_run or self._sender is None:
            record |= {"answered": False, "reason": Reason.DRY_RUN.value, "dry_run": True}
            context = self._channels.get(channel_key(job.channel.domain, job.channel.channel))
            if context is not None and not job.chat.is_pm:
                for part in reply.parts:
                    context.state.add_chat(self._bot, part, 0, from_bot=True)
            log.info("reply_dry_run", parts=len(reply.parts))
            return
        request_ids = []
        for part in reply.parts:
            if job.chat.is_pm:
                result = await self._sender.pm(job.channel, job.chat.username, part)
            else:
                result = await self._sender.say(job.channel, part)
            request_ids.append(result.request_id)
            if result.ack not in ("not_requested", "accepted"):
                record["ack"] = result.ack
        record |= {"answered": True, "reason": reason.value, "request_ids": request_ids}
        log.info("reply_sent", parts=len(reply.parts), provider=record.get("provider"))


def _add(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else a + b


def _provider_failed(record: dict[str, Any], exc: ProviderError) -> None:
    record |= {
        "answered": False,
        "reason": Reason.LLM_FAILED.value,
        "provider": exc.provider,
        "error": str(exc),
        "error_type": type(exc).__name__,
    }
    log.warning("provider_failed", provider=exc.provider, error=str(exc))


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
