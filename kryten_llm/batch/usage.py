"""What asking one item cost, and how the item ended: the shape of a result before it is stored.

An asking strategy (:mod:`kryten_llm.batch.asking`) opens an :class:`Attempt` when it starts on
an item, adds each completion's tokens, cost and latency to the attempt's :class:`Usage`
(several completions when ``--expect-json`` re-asks; a share of one when rows are packed), and
closes it with an :class:`Answer`. :meth:`Attempt.finish` turns that into the
:class:`~kryten_llm.batch.storetypes.ItemResult` the store keeps.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from kryten_llm.batch.storetypes import ItemResult, ItemStatus
from kryten_llm.batch.targets import Target
from kryten_llm.batch.work import WorkItem
from kryten_llm.llm.base import Completion
from kryten_llm.pipeline.outcome import Outcome


@dataclass(frozen=True, slots=True)
class Answer:
    """How one item ended: its status, the answer text or the error, pipeline details."""

    status: ItemStatus
    response: str | None = None
    error: str | None = None
    extra: dict[str, Any] | None = None

    @classmethod
    def done(cls, response: str) -> Answer:
        """An item answered with ``response``."""
        return cls(ItemStatus.DONE, response=response)

    @classmethod
    def failed(cls, error: str) -> Answer:
        """An item that could not be answered, and why."""
        return cls(ItemStatus.FAILED, error=error)


@dataclass(slots=True)
class Usage:
    """Tokens, cost and latency accumulated over the calls made for one item."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    latency_ms: float | None = None
    provider: str | None = None

    def add(self, completion: Completion, cost: float | None, *, parts: int = 1) -> None:
        """Count ``completion`` (and its ``cost``), or a ``1/parts`` share of a packed one."""
        self.provider = completion.provider
        self.latency_ms = completion.latency_ms
        if completion.usage is not None:
            self.prompt_tokens = (self.prompt_tokens or 0) + completion.usage.prompt_tokens // parts
            self.completion_tokens = (
                self.completion_tokens or 0
            ) + completion.usage.completion_tokens // parts
        if cost is not None:
            self.cost_usd = (self.cost_usd or 0.0) + cost / parts

    @classmethod
    def of_outcome(cls, outcome: Outcome) -> Usage:
        """The usage of a live reply (``--pipeline``): the responder measured it."""
        tokens = outcome.usage
        return cls(
            prompt_tokens=tokens.prompt_tokens if tokens is not None else None,
            completion_tokens=tokens.completion_tokens if tokens is not None else None,
            cost_usd=outcome.cost_usd,
            latency_ms=outcome.latency_ms,
            provider=outcome.provider,
        )


@dataclass(slots=True)
class Attempt:
    """One item being asked of one target, from the first request to its result.

    Attributes:
        item: the row.
        target: the model (label and provider chain).
        usage: what the calls cost so far.
        started: wall time when asking began (stored as ``started_at``).
    """

    item: WorkItem
    target: Target
    usage: Usage = field(default_factory=Usage)
    started: float = field(default_factory=time.time)

    def finish(self, answer: Answer, *, requests: int) -> ItemResult:
        """The stored result of this attempt.

        Args:
            answer: how the item ended.
            requests: HTTP requests sent for it (retries and re-asks included).
        """
        extra = answer.extra
        return ItemResult(
            row_key=self.item.row_key,
            model=self.target.label,
            prompt_hash=self.item.prompt_hash,
            status=answer.status,
            row_json=self.item.row_json,
            response=answer.response,
            error=answer.error,
            attempts=requests,
            provider=self.usage.provider,
            prompt_tokens=self.usage.prompt_tokens,
            completion_tokens=self.usage.completion_tokens,
            cost_usd=self.usage.cost_usd,
            latency_ms=self.usage.latency_ms,
            extra=None if extra is None else json.dumps(extra, ensure_ascii=False),
            started_at=self.started,
            finished_at=time.time(),
        )
