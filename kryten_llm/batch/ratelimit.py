"""Request pacing for batch runs: at most N requests in any window, shared by every worker.

A batch is a flood by design, so the limit is enforced *before* each request leaves, by
spacing: consecutive requests start at least ``window / limit`` (plus a small margin for
network jitter) apart. Spacing is stricter than a sliding-window counter (no burst at the
start), and it is what makes the guarantee hold as the *server* sees it: every half-open window
of ``window`` seconds holds at most ``limit`` request starts.

The window length, the clock and the sleep are injectable (STYLE.md practice 10), so a test can
check "20 per minute" as "20 per second" without waiting minutes. :class:`PacedProvider` wraps
a provider so that retries made by the :class:`~kryten_llm.llm.manager.ProviderManager` are
paced too; a worker may take the first slot itself before it starts its reply's deadline.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from kryten_llm.llm.base import Completion, CompletionRequest, Provider

# A slot taken by the worker before calling the manager, consumed by the first request.
_prepaid: contextvars.ContextVar[bool] = contextvars.ContextVar("batch_prepaid", default=False)
# Requests sent for the item the current worker task is on (see count_requests).
_requests: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "batch_requests", default=None
)


def count_requests() -> list[int]:
    """Start counting the requests this task sends; the box's one element is the count."""
    box = [0]
    _requests.set(box)
    return box


class RequestPacer:
    """At most ``limit`` request starts in any ``window`` seconds, evenly spaced.

    Args:
        limit: requests allowed per window (> 0).
        window: the window length in seconds (60 for "per minute").
        margin: extra spacing as a fraction of the interval, so that jitter between here and
            the server cannot squeeze two requests closer than the limit allows.
        clock: monotonic time source.
        sleep: the awaitable sleep (tests inject a fake one).
    """

    def __init__(
        self,
        limit: float,
        window: float = 60.0,
        *,
        margin: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if limit <= 0 or window <= 0:
            raise ValueError("limit and window must be positive")
        self.limit = limit
        self.window = window
        self.interval = window / limit * (1.0 + margin)
        self._clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._last: float | None = None

    async def acquire(self) -> None:
        """Wait for this caller's turn; callers are served in arrival order."""
        async with self._lock:
            while True:
                now = self._clock()
                if self._last is None or now >= self._last + self.interval:
                    # Stamped after the wait, with the real time: late wake-ups never
                    # let the next request come closer than the interval.
                    self._last = now
                    return
                await self._sleep(self._last + self.interval - now)

    def eta_seconds(self, requests: int) -> float:
        """The least time ``requests`` more requests can take under this pace."""
        return max(requests - 1, 0) * self.interval


async def acquire_all(pacers: Sequence[RequestPacer]) -> None:
    """Take a slot of each pacer, in order."""
    for pacer in pacers:
        await pacer.acquire()


async def prepay(pacers: Sequence[RequestPacer]) -> None:
    """Take the slots for the next request now; its :class:`PacedProvider` will not wait again.

    Workers call this before starting a reply's deadline, so time spent queueing for the rate
    limit does not eat into the time allowed for the call and its retries.
    """
    await acquire_all(pacers)
    _prepaid.set(bool(pacers))


class PacedProvider:
    """A provider whose every call (first tries and retries alike) waits for its pacers,
    and is counted (:func:`count_requests`).

    Args:
        inner: the real provider.
        pacers: the shared run-wide pacer and/or this provider's own.
    """

    type_name: ClassVar[str] = "paced"

    def __init__(self, inner: Provider, pacers: Sequence[RequestPacer]) -> None:
        self.inner = inner
        self.name = inner.name
        self.model = inner.model
        self._pacers = tuple(pacers)

    async def complete(self, request: CompletionRequest) -> Completion:
        """Wait for a slot (unless prepaid), then ask the real provider."""
        if _prepaid.get():
            _prepaid.set(False)
        else:
            await acquire_all(self._pacers)
        box = _requests.get()
        if box is not None:
            box[0] += 1
        return await self.inner.complete(request)

    async def probe(self, timeout_seconds: float) -> str:
        """Probe the real provider (not paced: probes are not batch requests)."""
        return await self.inner.probe(timeout_seconds)
