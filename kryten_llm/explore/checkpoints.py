"""When an exploration run writes its checkpoint, and that it writes one at a time.

Progress is checkpointed after ``every_items`` new items or ``every_seconds``, whichever comes
first, and once more at the end (the :class:`~kryten_llm.explore.explorer.Explorer` asks for
that one). Every checkpoint rewrites the whole run, so a write that took W seconds is followed
by a pause of at least :data:`WRITE_PAUSE_FACTOR` x W: rewriting stays a small share of the
time (not O(n^2) I/O) however long the run grows. :class:`CheckpointPacer` only decides when;
what is written is the explorer's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)

# A checkpoint that took W seconds is followed by at least this many times W without one.
WRITE_PAUSE_FACTOR = 10.0


class CheckpointPacer:
    """Paces the checkpoints of one run.

    Args:
        every_items: new items after which a checkpoint is wanted early.
        every_seconds: the longest time between two checkpoints while something changed.
        clock: monotonic time.
    """

    def __init__(
        self,
        *,
        every_items: int,
        every_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._every_items = every_items
        self._every_seconds = every_seconds
        self._clock = clock
        self.wanted = asyncio.Event()
        self.dirty = False  # something changed since the last checkpoint
        self._new = 0
        self._lock = asyncio.Lock()
        self._write_seconds = 0.0  # how long the last write took
        self._written_at: float | None = None  # when it ended (clock time)

    def added(self, new: int) -> None:
        """Count ``new`` items; enough of them since the last checkpoint want one now."""
        self._new += new
        if self._new >= self._every_items:
            self.wanted.set()

    async def loop(self, stop: asyncio.Event, checkpoint: Callable[[], Awaitable[None]]) -> None:
        """Call ``checkpoint`` when one is due and something changed, until ``stop`` is set.

        Returns as soon as it sees the stop, never in the middle of a write. A write that
        fails is logged; the next one tries again.
        """
        while not stop.is_set():
            pause = WRITE_PAUSE_FACTOR * self._write_seconds
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wanted.wait(), max(self._every_seconds, pause))
            if self._written_at is not None:  # wanted early (item count): still pause
                rest = self._written_at + pause - self._clock()
                if rest > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), rest)
            if stop.is_set():
                return
            self.wanted.clear()
            if self.dirty:
                try:
                    await checkpoint()
                except OSError as exc:  # the final checkpoint raises it to the caller
                    log.error("explore_checkpoint_failed", error=str(exc))

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """One checkpoint at a time: hold the turn while gathering and writing the state.

        Everything up to here counts as written; a write that fails must set :attr:`dirty`.
        """
        async with self._lock:
            self.dirty = False
            self._new = 0
            yield

    @contextlib.asynccontextmanager
    async def timed(self) -> AsyncIterator[None]:
        """Measure the write inside, for the pause that follows it (failed writes count too)."""
        started = self._clock()
        try:
            yield
        finally:
            self._written_at = self._clock()
            self._write_seconds = self._written_at - started
