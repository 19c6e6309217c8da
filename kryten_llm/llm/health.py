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

Time is ``time.monotonic()`` through an injectable clock. The state is a :class:`CircuitState`
owned by :class:`ProviderHealth`: only its methods assign it (callers report outcomes, never
states), and the snapshot carries its plain string value.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from kryten_llm.errors import (
    AuthFailed,
    BadRequest,
    ProviderError,
    ProviderTimeout,
    QuotaExhausted,
    RateLimited,
)

if TYPE_CHECKING:
    from kryten_llm.config import CircuitConfig

_WINDOW = 50  # calls kept for the error rate


# Request errors about one request, not the provider: the provider stays in use.
_ONE_REQUEST = frozenset({400, 413, 422})


class CircuitState(StrEnum):
    """Where a provider's circuit stands; the values are what snapshots and /health show."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    COOLING = "cooling"
    MISCONFIGURED = "misconfigured"


_PAUSED = (CircuitState.OPEN, CircuitState.COOLING)


@dataclass(slots=True)
class ProviderHealth:
    """Circuit state and running figures of one provider."""

    name: str
    config: CircuitConfig
    clock: Callable[[], float] = time.monotonic
    state: CircuitState = CircuitState.CLOSED
    consecutive_failures: int = 0
    until: float = 0.0
    last_error: str | None = None
    last_error_kind: str | None = None  # the error's class name, e.g. "ProviderTimeout"
    timeouts: int = 0  # calls that got no answer within their budget, since the start
    latency_ms: float | None = None  # exponentially weighted average of successes
    calls: int = 0
    outcomes: deque[bool] = field(default_factory=lambda: deque(maxlen=_WINDOW))
    _probing: bool = False
    _in_flight: dict[int, float] = field(default_factory=dict)  # call token -> start time
    _next_token: int = 0

    def call_started(self) -> int:
        """A call begins; returns the token to hand to :meth:`call_ended`.

        Calls in flight show in the snapshot, so a provider that hangs is visible before
        its timeout turns the hang into a counted failure.
        """
        self._next_token += 1
        self._in_flight[self._next_token] = self.clock()
        return self._next_token

    def call_ended(self, token: int) -> None:
        """The call of ``token`` is over, whatever its outcome."""
        self._in_flight.pop(token, None)

    def available(self) -> bool:
        """Whether a call may go to this provider now (claims the probe when half-open)."""
        now = self.clock()
        if self.state == CircuitState.MISCONFIGURED:
            return False
        if self.state in _PAUSED:
            if now < self.until:
                return False
            self.state = CircuitState.HALF_OPEN
            self._probing = False
        if self.state == CircuitState.HALF_OPEN:
            if self._probing:
                return False
            self._probing = True
        return True

    def askable(self) -> bool:
        """Whether :meth:`available` could say yes now, without claiming anything.

        The manager uses it to plan time for the providers after the one it is calling.
        """
        if self.state == CircuitState.MISCONFIGURED:
            return False
        if self.state in _PAUSED:
            return self.clock() >= self.until
        return not (self.state == CircuitState.HALF_OPEN and self._probing)

    def retry_in(self) -> float:
        """Seconds until the provider may be tried again (0 when it may be now)."""
        if self.state in _PAUSED:
            return max(self.until - self.clock(), 0.0)
        return 0.0

    def succeeded(self, latency_ms: float) -> None:
        """A good answer: closes the circuit and updates the average latency."""
        self._record(True)
        self.state = CircuitState.CLOSED
        self.consecutive_failures = 0
        self._probing = False
        self.latency_ms = (
            latency_ms if self.latency_ms is None else 0.8 * self.latency_ms + 0.2 * latency_ms
        )

    def failed(self, error: str, *, kind: str | None = None, timed_out: bool = False) -> None:
        """A retryable failure (a timeout too): counts towards opening the circuit.

        Args:
            error: the (already redacted) error text, kept as ``last_error``.
            kind: the error's class name, kept as ``last_error_kind``.
            timed_out: the call got no answer within its budget (counted in ``timeouts``).
        """
        self._record(False, error, kind)
        self.consecutive_failures += 1
        if timed_out:
            self.timeouts += 1
        if (
            self.state == CircuitState.HALF_OPEN
            or self.consecutive_failures >= self.config.failure_threshold
        ):
            self.state = CircuitState.OPEN
            self.until = self.clock() + self.config.open_seconds
        self._probing = False

    def cool(self, seconds: float, error: str, *, kind: str | None = None) -> None:
        """The provider asked for a pause (Retry-After, exhausted credit)."""
        self._record(False, error, kind)
        self.state = CircuitState.COOLING
        self.until = max(self.until, self.clock() + seconds)
        self._probing = False

    def refused(self, error: str, *, kind: str | None = None) -> None:
        """The provider refused this one request (400/413/422): it stays askable.

        It counts as a failed last call (health shows it) but never opens the circuit: one
        message a content filter dislikes must not silence the provider for everyone.
        """
        self._record(False, error, kind)
        self.consecutive_failures += 1
        self._probing = False

    def release(self) -> None:
        """A half-open trial call ended without an answer either way (cancelled, no time
        left): the next call may try again."""
        if self.state == CircuitState.HALF_OPEN:
            self._probing = False

    def misconfigured(self, error: str, *, kind: str | None = None) -> None:
        """Authentication or request errors: skip it until someone fixes the config."""
        self._record(False, error, kind)
        self.state = CircuitState.MISCONFIGURED
        self._probing = False

    def report(self, error: ProviderError, *, pause: float) -> None:
        """Record a failed call by what its error means for the circuit.

        400, 413, 422 (a content filter, a prompt over the context) are about one request:
        refused, the circuit untouched. Other request errors (404: no such model or path; a
        request that cannot even be sent) and AuthFailed: misconfigured. QuotaExhausted: cooling for
        ``quota_cooldown_seconds``. RateLimited: cooling for ``pause`` (its Retry-After, or a
        backoff). Anything else (timeouts, refused, 5xx, garbage, unusable answers): one
        failure towards opening the circuit.

        Args:
            error: the (already redacted) error.
            pause: seconds a rate-limited provider cools down.
        """
        text, kind = str(error), type(error).__name__
        if isinstance(error, BadRequest) and error.status in _ONE_REQUEST:
            self.refused(text, kind=kind)
        elif isinstance(error, AuthFailed | BadRequest):
            self.misconfigured(text, kind=kind)
        elif isinstance(error, QuotaExhausted):
            self.cool(self.config.quota_cooldown_seconds, text, kind=kind)
        elif isinstance(error, RateLimited):
            self.cool(pause, text, kind=kind)
        else:
            self.failed(text, kind=kind, timed_out=isinstance(error, ProviderTimeout))

    def forgive(self) -> None:
        """A request error was about one request, not the provider (batch: one row too long).

        Undoes :meth:`misconfigured`; any other state is left as it is.
        """
        if self.state == CircuitState.MISCONFIGURED:
            self.state = CircuitState.CLOSED

    def _record(self, ok: bool, error: str | None = None, kind: str | None = None) -> None:
        self.calls += 1
        self.outcomes.append(ok)
        if not ok:
            self.last_error = error
            self.last_error_kind = kind

    @property
    def error_rate(self) -> float:
        """Share of failed calls among the last 50."""
        return self.outcomes.count(False) / len(self.outcomes) if self.outcomes else 0.0

    def snapshot(self) -> dict[str, Any]:
        """Plain data for heartbeats and operator surfaces.

        ``state`` is the circuit's string value; ``consecutive_failures`` (reset by a good
        answer), ``last_error_kind`` and ``timeouts`` say why it is failing; ``in_flight`` and
        ``oldest_call_seconds`` (None when idle) show a call that is hanging right now.
        """
        oldest = min(self._in_flight.values(), default=None)
        return {
            "state": str(self.state),
            "retry_in": round(self.retry_in(), 3),
            "last_error": self.last_error,
            "latency_ms": round(self.latency_ms, 1) if self.latency_ms is not None else None,
            "error_rate": round(self.error_rate, 3),
            "calls": self.calls,
            "consecutive_failures": self.consecutive_failures,
            "last_error_kind": self.last_error_kind,
            "timeouts": self.timeouts,
            "in_flight": len(self._in_flight),
            "oldest_call_seconds": (
                round(self.clock() - oldest, 3) if oldest is not None else None
            ),
        }
