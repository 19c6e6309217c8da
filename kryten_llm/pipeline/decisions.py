"""Decision values: why the bot did or did not answer a message.

"Not for us" is not an error. Each stage returns one of these small frozen values; the service
logs them (debug/info) and writes them to the response log. ``Reason`` strings are stable: they
appear in the JSONL log and in metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class Reason(StrEnum):
    """Why a message was answered or not. Values are stable log vocabulary."""

    ANSWERED = "answered"
    FALLBACK = "fallback"  # answered from a fallback pool: every provider failed
    DRY_RUN = "dry_run"
    # intake filters (no response-log line: these are not aimed at the bot)
    OWN_MESSAGE = "own_message"
    SERVER_NOTICE = "server_notice"
    SHADOW_MUTED = "shadow_muted"
    REPLAY = "replay"
    DUPLICATE = "duplicate"
    COMMAND = "command"
    IGNORED_USER = "ignored_user"
    OTHER_BOT = "other_bot"
    EMPTY = "empty"
    # after a trigger fired
    SPAM = "spam"
    RATE_LIMITED = "rate_limited"
    QUEUE_OVERFLOW = "queue_overflow"
    LLM_FAILED = "llm_failed"
    EMPTY_REPLY = "empty_reply"
    INVALID_REPLY = "invalid_reply"
    DEADLINE = "deadline"
    SHUTDOWN = "shutdown"
    PAUSED = "paused"
    # several instances (kryten_llm.cluster): another one answers, or no claim could be made
    ANSWERED_ELSEWHERE = "answered_elsewhere"
    CLAIM_FAILED = "claim_failed"
    INTERNAL_ERROR = "internal_error"
    # memory (issue 14): "forget me" was done here, and confirmed without a model
    FORGOTTEN = "forgotten"


# join: the bot joined in unasked; media: a comment on a new video (conv14)
TriggerKind = Literal["mention", "word", "pm", "join", "media"]


@dataclass(frozen=True, slots=True)
class TriggerMatch:
    """A trigger that fired for a message.

    Attributes:
        kind: mention (named, or a follow-up), word (a configured trigger word), pm, join
            (joining in unasked) or media (a new video).
        name: ``"mention"``, ``"followup"``, ``"pm"``, ``"join"``, ``"media_change"`` or the
            trigger word's configured name.
        priority: the winning priority (higher wins).
        context: extra prompt instruction from the trigger's config ("" if none).
        providers: the trigger's own provider order (empty: the global chain).
    """

    kind: TriggerKind
    name: str
    priority: int = 0
    context: str = ""
    providers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The rate limiter's answer.

    Attributes:
        allowed: whether the reply may go ahead.
        limit: which limit refused it (e.g. ``"global_per_minute"``), ``""`` when allowed.
        retry_after: seconds until that limit would let the same reply through.
    """

    allowed: bool
    limit: str = ""
    retry_after: float = 0.0


ALLOWED = RateDecision(True)
