"""Engagement figures from the channel's plan, live: what the dashboard and /metrics show.

The plan asks for replies per hour, the bot's share of chat, activations per trigger over time,
rate-limit refusals by kind over time and the time to the first part of a reply. This module
keeps them per UTC hour for the last :data:`HOURS` hours (from every response-log record), and
exports them as metrics: ``chat_share`` and ``chat_share_budget`` gauges, ``activations`` by
trigger and ``refusals`` by limit counters, and a ``first_part_seconds`` histogram when the reply
path reports the time to the first part (``first_part_ms``). Labels are bounded: trigger names
come from the config, limits from the rate limiter's fixed list.

``kryten-llm logs stats`` and ``logs plot`` compute the same figures from the files
(:mod:`kryten_llm.ops.logstats`).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kryten_llm.pipeline.decisions import Reason

if TYPE_CHECKING:
    from kryten_llm.ops.metrics import LabelValues, Registry
    from kryten_llm.pipeline.outcome import Outcome

HOURS = 24
_FIRST_PART_SAMPLES = 500  # per hour: enough for a p95


@dataclass
class Hour:
    """What happened in one UTC hour."""

    start: float
    replies: int = 0
    activations: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    first_part_ms: list[float] = field(default_factory=list)
    share: float | None = None  # the last share stamped on a line of this hour


def first_part_ms(outcome: Outcome) -> float | None:
    """The time to the first part, when the reply path recorded it (streamed replies)."""
    value = getattr(outcome, "first_part_ms", None)
    return float(value) if isinstance(value, int | float) else None


class Engagement:
    """Hourly engagement figures and their metrics.

    Args:
        registry: where the metrics go.
        shares: the bot's share of each channel's chat now, by channel key.
        budget: the configured share budget (read when scraped: a reload may change it).
        clock: wall-clock seconds (hours are UTC hours).
    """

    def __init__(
        self,
        registry: Registry,
        shares: Callable[[], dict[str, float]],
        budget: Callable[[], float],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._shares = shares
        self._budget = budget
        self._clock = clock
        self.hours: deque[Hour] = deque(maxlen=HOURS)

        def share_samples() -> dict[LabelValues, float]:
            return {(key,): value for key, value in shares().items()}

        registry.gauge(
            "chat_share",
            "The bot's share of the channel's chat over the share window, by channel key.",
            share_samples,
            ("channel",),
        )
        registry.gauge(
            "chat_share_budget",
            "The most share of chat the bot may take (participation.share_budget).",
            lambda: {(): budget()},
        )
        self.activations = registry.counter(
            "activations", "Messages that fired a trigger, by trigger name.", ("trigger",)
        )
        self.refusals = registry.counter(
            "refusals", "Replies refused by a rate limit or the share budget, by limit.", ("limit",)
        )
        self.first_part = registry.histogram(
            "first_part_seconds", "From a triggering message to the first part of its reply sent."
        )

    def _hour(self) -> Hour:
        now = self._clock()
        start = now - now % 3600
        if not self.hours or self.hours[-1].start != start:
            self.hours.append(Hour(start))
        return self.hours[-1]

    def on_outcome(self, outcome: Outcome) -> None:
        """Count one response-log record."""
        hour = self._hour()
        name = outcome.trigger_name or outcome.trigger_kind
        hour.activations[name] += 1
        self.activations.labels(name).inc()
        if outcome.reason is Reason.RATE_LIMITED:
            limit = outcome.limit or "unknown"
            hour.refusals[limit] += 1
            self.refusals.labels(limit).inc()
        if outcome.answered:
            hour.replies += 1
        first = first_part_ms(outcome)
        if first is not None:
            self.first_part.observe(first / 1000)
            if len(hour.first_part_ms) < _FIRST_PART_SAMPLES:
                hour.first_part_ms.append(first)
        if outcome.chat_share is not None:
            hour.share = outcome.chat_share

    def snapshot(self) -> dict[str, Any]:
        """For the dashboard: the share now and the figures of every hour kept, oldest first."""
        self._hour()  # an idle hour shows as an hour with nothing in it
        last = self.hours[-1]
        return {
            "share": {key: round(value, 4) for key, value in self._shares().items()},
            "budget": self._budget(),
            "replies_this_hour": last.replies,
            "hours": [
                {
                    "hour": datetime.fromtimestamp(h.start, UTC).strftime("%Y-%m-%dT%H"),
                    "replies": h.replies,
                    "activations": dict(h.activations),
                    "refusals": dict(h.refusals),
                    "first_part_ms_p50": _median(h.first_part_ms),
                    "share": h.share,
                }
                for h in self.hours
            ],
        }


def _median(samples: list[float]) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return round(ordered[len(ordered) // 2], 1)
