"""What became of one message aimed at the bot: the response-log line, as one frozen type.

Every decision the bot makes about a triggered message (answered, refused and why, failed)
ends as one :class:`Outcome`. The intake builds the ones it decides itself (spam, rate limits,
pauses, a full queue); the responder builds the rest. The same value is written to the JSONL
response log (:meth:`Outcome.to_json`), counted by telemetry, drawn by the demo's transcript and
turned into a batch item, so none of them looks anything up in a dict. :meth:`Outcome.from_json`
reads a log line back (``kryten-llm logs stats``), tolerating lines of older versions.

Every field is documented in the README ("The response log"); ``schema`` is bumped whenever a
field changes meaning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from kryten_llm.pipeline.decisions import Reason

if TYPE_CHECKING:
    from kryten_llm.bus.events import ChatEvent
    from kryten_llm.config import ChannelConfig
    from kryten_llm.pipeline.decisions import RateDecision, TriggerMatch

SCHEMA = 1
ANSWERING = frozenset({Reason.ANSWERED, Reason.FALLBACK})
_CALL_FIELDS = frozenset({"provider", "model", "fallback_from", "cost_usd", "latency_ms", "usage"})
_FALLBACK_FIELDS = frozenset({"provider"})


@dataclass(frozen=True, slots=True)
class Tokens:
    """Tokens the provider(s) reported for one reply, every call included."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Tokens) -> Tokens:
        return Tokens(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )


@dataclass(frozen=True, slots=True)
class FirstAttempt:
    """An answer the validator rejected before the corrective retry."""

    rejected: str
    text: str
    provider: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """One response-log line. ``None`` fields are left out of the JSON."""

    correlation_id: str
    channel: str
    domain: str
    username: str
    message_time: str | None
    kind: Literal["chat", "pm"]
    input: str
    trigger_kind: str
    trigger_name: str
    reason: Reason
    rank: float | None = None
    logged_at: str | None = None
    # refused before the LLM (spam, rate limits)
    offence: str | None = None
    strikes: int | None = None
    retry_after: float | None = None
    limit: str | None = None
    dry_run: bool | None = None
    # timing, from the message's arrival
    queued_ms: float | None = None
    total_ms: float | None = None
    first_part_ms: float | None = None  # arrival -> the first part handed to the bridge
    last_part_ms: float | None = None  # arrival -> the last part handed to the bridge
    # the LLM call(s): the provider of the answer kept, time, tokens and cost of every call
    provider: str | None = None
    model: str | None = None
    fallback_from: tuple[str, ...] | None = None
    cost_usd: float | None = None
    latency_ms: float | None = None
    usage: Tokens | None = None
    first_attempt: FirstAttempt | None = None
    # the reply
    removed: tuple[str, ...] | None = None
    parts: tuple[str, ...] | None = None
    truncated: bool | None = None
    request_ids: tuple[str, ...] | None = None
    ack: str | None = None
    fallback_pool: str | None = None
    streamed: bool | None = None  # parts went out while the model was still writing
    interrupted: bool | None = None  # a streamed answer failed after its first part was sent
    # refused after the LLM, or failed
    check: str | None = None
    detail: str | None = None
    rejected_parts: tuple[str, ...] | None = None
    error: str | None = None
    error_type: str | None = None
    # conv14: the bot's share of the channel's chat when this line was written (0..1)
    chat_share: float | None = None

    @classmethod
    def of(
        cls,
        channel: ChannelConfig,
        chat: ChatEvent,
        trigger: TriggerMatch,
        reason: Reason,
        *,
        rank: float | None = None,
        queued_ms: float | None = None,
    ) -> Outcome:
        """Who said what where, which trigger fired, and (so far) what became of it."""
        return cls(
            correlation_id=chat.envelope.correlation_id,
            channel=channel.channel,
            domain=channel.domain,
            username=chat.username,
            message_time=_iso_from_ms(chat.time_ms),
            kind="pm" if chat.is_pm else "chat",
            input=chat.text,
            trigger_kind=trigger.kind,
            trigger_name=trigger.name,
            reason=reason,
            rank=rank,
            queued_ms=queued_ms,
        )

    def rate_limited(self, decision: RateDecision, *, dry_run: bool) -> Outcome:
        """This outcome refused by ``decision``: which limit, and in how long it frees."""
        return replace(
            self,
            reason=Reason.RATE_LIMITED,
            limit=decision.limit,
            retry_after=round(decision.retry_after, 3),
            dry_run=dry_run,
        )

    @property
    def answered(self) -> bool:
        """Whether something was said in the channel (dry-run answers were not)."""
        return self.reason in ANSWERING

    def to_json(self) -> dict[str, Any]:
        """The JSONL form: the same keys as every earlier version, plus ``schema``."""
        data: dict[str, Any] = {"schema": SCHEMA, "logged_at": self.logged_at}
        for name in _FIELD_NAMES:
            value = getattr(self, name)
            if name == "trigger_kind":
                data["trigger"] = {"kind": self.trigger_kind, "name": self.trigger_name}
            elif name == "reason":
                data["answered"] = self.answered
                data["reason"] = self.reason.value
            elif name not in ("trigger_name", "logged_at") and (
                value is not None or name in self._complete_groups()
            ):
                data[name] = _plain(value)
        return data

    def _complete_groups(self) -> frozenset[str]:
        """Fields written even when null, because their group applies to this outcome.

        Once a provider answered, every field of the call is written (``cost_usd: null`` means
        "no price configured", not "field missing"); a fallback-pool answer writes
        ``provider: null`` (no provider answered).
        """
        if self.model is not None:
            return _CALL_FIELDS
        if self.reason is Reason.FALLBACK:
            return _FALLBACK_FIELDS
        return frozenset()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outcome | None:
        """A log line read back; ``None`` when it is not a response-log record at all.

        Values of the wrong type are dropped (read as absent) rather than refused: a summary
        of a month of logs must not stop at one odd line.
        """
        try:
            reason = Reason(data["reason"])
        except (KeyError, ValueError, TypeError):
            return None
        trigger = data.get("trigger")
        trigger = trigger if isinstance(trigger, dict) else {}
        usage = data.get("usage")
        return cls(
            correlation_id=_str(data.get("correlation_id")) or "",
            channel=_str(data.get("channel")) or "",
            domain=_str(data.get("domain")) or "",
            username=_str(data.get("username")) or "",
            message_time=_str(data.get("message_time")),
            kind="pm" if data.get("kind") == "pm" else "chat",
            input=_str(data.get("input")) or "",
            trigger_kind=_str(trigger.get("kind")) or "",
            trigger_name=_str(trigger.get("name")) or "",
            reason=reason,
            logged_at=_str(data.get("logged_at")),
            provider=_str(data.get("provider")),
            model=_str(data.get("model")),
            cost_usd=_number(data.get("cost_usd")),
            latency_ms=_number(data.get("latency_ms")),
            total_ms=_number(data.get("total_ms")),
            first_part_ms=_number(data.get("first_part_ms")),
            last_part_ms=_number(data.get("last_part_ms")),
            usage=(
                Tokens(_int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens")))
                if isinstance(usage, dict)
                else None
            ),
            parts=_strings(data.get("parts")),
            fallback_pool=_str(data.get("fallback_pool")),
            error=_str(data.get("error")),
            limit=_str(data.get("limit")),
            chat_share=_number(data.get("chat_share")),
        )


_FIELD_NAMES = tuple(f.name for f in fields(Outcome))  # in declaration order, read once


def _plain(value: object) -> object:
    """A field's value as JSON data."""
    if isinstance(value, Tokens | FirstAttempt):
        return {f.name: getattr(value, f.name) for f in fields(value)}
    if isinstance(value, tuple):
        return list(value)
    return value


def _iso_from_ms(time_ms: int) -> str | None:
    """CyTube's timestamp as UTC ISO-8601; ``None`` when absent or not a real date."""
    if not time_ms:
        return None
    try:
        return datetime.fromtimestamp(time_ms / 1000, UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        return None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _strings(value: object) -> tuple[str, ...] | None:
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, str))
    return None
