"""What the operator surfaces show: metrics, a rolling time series and the recent decisions.

One :class:`Telemetry` per service collects from three places, all cheap and non-blocking:

- the service's :class:`~kryten_llm.pipeline.stats.Stats` counters (events, triggers,
  decisions), read only when something asks;
- every provider call, reported by the :class:`~kryten_llm.llm.manager.ProviderManager`
  (outcome, latency, tokens, cost);
- every response-log record (the decision table, reply latency).

A sampler turns counters into per-second rates once a second and keeps the last
``series_points`` of them for the dashboard's charts. Nothing here is labelled by user.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from kryten_llm.ops.metrics import LATENCY_BUCKETS, LabelValues, Registry
from kryten_llm.pipeline.decisions import Reason
from kryten_llm.pipeline.stats import Count

if TYPE_CHECKING:
    from kryten_llm.llm.base import Completion
    from kryten_llm.pipeline.outcome import Outcome
    from kryten_llm.pipeline.stats import Stats

# The counters charted on the dashboard, as (series name, how to read it from Stats).
RATE_SERIES: tuple[tuple[str, Callable[[Stats], int]], ...] = (
    ("events", lambda s: s.totals[Count.EVENTS]),
    ("chat", lambda s: s.totals[Count.CHAT]),
    ("triggered", lambda s: s.totals[Count.TRIGGERED]),
    ("answered", lambda s: s.decisions[Reason.ANSWERED]),
)
_TEXT_LIMIT = 300  # characters of chat text kept per recent decision


def _by_label(counts: Iterable[tuple[str, int]]) -> dict[LabelValues, float]:
    """A typed counter's items as metric samples, one label value per key (enums are str)."""
    return {(str(key),): float(value) for key, value in counts}


class Telemetry:
    """Metrics registry, rate series and recent decisions of one service.

    Args:
        stats: the service's counters.
        recent: how many decisions the dashboard table keeps.
        series_points: how many one-second samples the charts keep.
        clock: wall-clock seconds, for the times shown.
        monotonic: seconds for measuring intervals (immune to clock changes).
    """

    def __init__(
        self,
        stats: Stats,
        *,
        recent: int = 50,
        series_points: int = 300,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stats = stats
        self._clock = clock
        self._monotonic = monotonic
        self.recent: deque[dict[str, Any]] = deque(maxlen=recent)
        self.series: deque[dict[str, float]] = deque(maxlen=series_points)
        self._last_counts: dict[str, int] | None = None
        self._last_sample_at = 0.0
        self.provider_calls: dict[str, dict[str, int]] = {}
        r = self.registry = Registry("kryten_llm_")
        r.counter_from(
            "events",
            "Channel events received, by kind.",
            lambda: _by_label(self.stats.event_types.items()),
            ("type",),
        )
        r.counter_from(
            "events_malformed",
            "Events dropped because their payload was not the bridge's envelope.",
            lambda: {(): float(self.stats.totals[Count.EVENTS_MALFORMED])},
        )
        r.counter_from(
            "triggers",
            "Messages that fired a trigger, by trigger kind.",
            lambda: _by_label(self.stats.triggers.items()),
            ("kind",),
        )
        r.counter_from(
            "decisions",
            "What became of triggered messages, by reason.",
            lambda: _by_label(self.stats.decisions.items()),
            ("reason",),
        )
        r.counter_from(
            "ignored",
            "Chat messages ignored before any trigger, by reason.",
            lambda: _by_label(self.stats.ignored.items()),
            ("reason",),
        )
        r.counter_from(
            "memory",
            "What the memory did, by event (notes stored, users forgotten, writes failed...).",
            lambda: _by_label(self.stats.memory.items()),
            ("event",),
        )
        self.replies = r.counter("replies", "Replies sent to the channel.")
        self.reply_parts = r.counter(
            "reply_parts", "Chat messages sent (a reply may have several)."
        )
        self.reply_seconds = r.histogram(
            "reply_seconds", "From receiving a triggering message to its reply being sent."
        )
        self.calls = r.counter(
            "provider_calls", "LLM calls, by provider and outcome.", ("provider", "outcome")
        )
        self.call_seconds = r.histogram(
            "provider_latency_seconds",
            "Latency of LLM calls, by provider.",
            ("provider",),
            LATENCY_BUCKETS,
        )
        self.tokens = r.counter(
            "tokens", "Tokens used, by provider and direction.", ("provider", "direction")
        )
        self.cost = r.counter("cost_usd", "Cost in USD from the configured prices.", ("provider",))

    # --- feeds -----------------------------------------------------------------------------

    def on_call(
        self, provider: str, outcome: str, seconds: float, completion: Completion | None
    ) -> None:
        """One provider call ended (``outcome`` is ``ok`` or the error's class name)."""
        self.calls.labels(provider, outcome).inc()
        self.call_seconds.labels(provider).observe(seconds)
        calls = self.provider_calls.setdefault(provider, {})
        calls[outcome] = calls.get(outcome, 0) + 1
        if completion is not None and completion.usage is not None:
            self.tokens.labels(provider, "prompt").inc(completion.usage.prompt_tokens)
            self.tokens.labels(provider, "completion").inc(completion.usage.completion_tokens)

    def on_cost(self, provider: str, usd: float) -> None:
        self.cost.labels(provider).inc(usd)

    def on_outcome(self, outcome: Outcome) -> None:
        """What became of a message: a decision for the table, a reply for the counters."""
        if outcome.answered:
            self.replies.inc()
            self.reply_parts.inc(len(outcome.parts or ()))
            if outcome.total_ms is not None:
                self.reply_seconds.observe(outcome.total_ms / 1000)
        self.recent.appendleft(
            {
                "time": self._clock(),
                "channel": outcome.channel,
                "username": outcome.username,
                "text": outcome.input[:_TEXT_LIMIT],
                "trigger": outcome.trigger_name,
                "reason": outcome.reason.value,
                "answered": outcome.answered,
                "provider": outcome.provider,
                "reply": " ".join(outcome.parts or ())[:_TEXT_LIMIT],
                "total_ms": outcome.total_ms,
            }
        )

    # --- readers ---------------------------------------------------------------------------

    def sample(self) -> dict[str, float]:
        """Record one point of per-second rates since the previous sample; return it."""
        now = self._monotonic()
        counts = {name: read(self.stats) for name, read in RATE_SERIES}
        point: dict[str, float] = {"time": self._clock()}
        if self._last_counts is not None:
            elapsed = max(now - self._last_sample_at, 1e-6)
            for name, _ in RATE_SERIES:
                point[name] = round((counts[name] - self._last_counts[name]) / elapsed, 3)
            self.series.append(point)
        self._last_counts = counts
        self._last_sample_at = now
        return point

    def breakdown(self, kind: str) -> dict[str, int]:
        """One family of counters by key, sorted: ``triggers`` or ``decisions``."""
        counts: Iterable[tuple[str, int]] = (
            self.stats.triggers.items() if kind == "triggers" else self.stats.decisions.items()
        )
        return {str(key): value for key, value in sorted(counts)}
