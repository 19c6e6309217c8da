"""Per-provider health: a circuit breaker plus the figures operators want to see.

The manager asks :meth:`ProviderHealth.available` before calling a provider and reports every
outcome. States:

- ``closed``: healthy, calls go through;
- ``open``: ``failure_threshold`` consecutive failures; no calls until ``open_seconds`` passed;
- ``half_open``: the open period is over; exactly one probe call may go through, and its
  outcome closes or re-opens the circuit;
- ``cooling``: the provider said so itself (a long ``Retry-After``, an exhausted credit): no
  calls until the time it gave;
- ``misconfigured``: 401/403/400-class answers; retrying cannot help until someone fixes the
  config, so it is skipped until the process restarts.

Time is ``time.monotonic()`` through an injectable clock.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kryten_llm.config import CircuitConfig

_WINDOW = 50  # calls kept for the error rate


@dataclass(slots=True)
class ProviderHealth:
    """Circuit state and running figures of one provider."""

    name: str
    config: CircuitConfig
    clock: Callable[[], float] = time.monotonic
    state: str = "closed"
    consecutive_failures: int = 0
    until: float = 0.0
    last_error: str | None = None
    latency_ms: float | None = None  # exponentially weighted average of successes
    calls: int = 0
    outcomes: deque[bool] = field(default_factory=lambda: deque(maxlen=_WINDOW))
    _probing: bool = False

    def available(self) -> bool:
        """Whether a call may go to this provider now (claims the probe when half-open)."""
        now = self.clock()
        if self.state == "misconfigured":
            return False
        if self.state in ("open", "cooling"):
            if now < self.until:
                return False
            self.state = "half_open"
            self._probing = False
        if self.state == "half_open":
            if self._probing:
                return False
            self._probing = True
        return True

    def retry_in(self) -> float:
        """Seconds until the provider may be tried again (0 when it may be now)."""
        if self.state in ("open", "cooling"):
            return max(self.until - self.clock(), 0.0)
        return 0.0

    def succeeded(self, latency_ms: float) -> None:
        self._record(True)
        self.state = "closed"
        self.consecutive_failures = 0
        self._probing = False
        self.latency_ms = (
            latency_ms if self.latency_ms is None else 0.8 * self.latency_ms + 0.2 * latency_ms
        )

    def failed(self, error: str) -> None:
        """A retryable failure: counts towards opening the circuit."""
        self._record(False)
        self.last_error = error
        self.consecutive_failures += 1
        if self.state == "half_open" or self.consecutive_failures >= self.config.failure_threshold:
            self.state = "open"
            self.until = self.clock() + self.config.open_seconds
        self._probing = False

    def cool(self, seconds: float, error: str) -> None:
        """The provider asked for a pause (Retry-After, exhausted credit)."""
        self._record(False)
        self.last_error = error
        self.state = "cooling"
        self.until = max(self.until, self.clock() + seconds)
        self._probing = False

    def misconfigured(self, error: str) -> None:
        """Authentication or request errors: skip it until someone fixes the config."""
        self._record(False)
        self.last_error = error
        self.state = "misconfigured"
        self._probing = False

    def forgive(self) -> None:
        """A request error was about one request, not the provider (batch: one row too long).

        Undoes :meth:`misconfigured`; any other state is left as it is.
        """
        if self.state == "misconfigured":
            self.state = "closed"

    def _record(self, ok: bool) -> None:
        self.calls += 1
        self.outcomes.append(ok)

    @property
    def error_rate(self) -> float:
        """Share of failed calls among the last 50."""
        return self.outcomes.count(False) / len(self.outcomes) if self.outcomes else 0.0

    def snapshot(self) -> dict[str, Any]:
        """Plain data for heartbeats and operator surfaces."""
        return {
            "state": self.state,
            "retry_in": round(self.retry_in(), 3),
            "last_error": self.last_error,
            "latency_ms": round(self.latency_ms, 1) if self.latency_ms is not None else None,
            "error_rate": round(self.error_rate, 3),
            "calls": self.calls,
        }
