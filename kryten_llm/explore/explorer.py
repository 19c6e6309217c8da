"""The topic explorer: N producers, one duplicate check, checkpoints, stop conditions.

This is where the pieces of :mod:`kryten_llm.explore` meet. :class:`Explorer` runs producers
(:mod:`~kryten_llm.explore.producer`) spread round-robin over the chosen providers; every
answer goes to the run's :class:`~kryten_llm.explore.ledger.Ledger`, which classifies each line
once, in the event loop, against every item from every producer.

A run stops at the first of: the target count of unique items, every producer out of
iterations, a yield of new items below ``min_yield`` over the last ``yield_window`` answers,
:meth:`Explorer.stop` (Ctrl+C in the CLI, the dashboard's stop button), or every producer failed.

Progress is checkpointed (:mod:`~kryten_llm.explore.output`) when the
:class:`~kryten_llm.explore.checkpoints.CheckpointPacer` says so, and once more at the end;
writes run in a thread, one at a time, newest state last. A write that fails keeps its pool
lines for the next one. :meth:`Explorer.snapshot` gives the live state as plain data.
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import structlog

from kryten_llm.errors import ExploreError
from kryten_llm.explore.checkpoints import CheckpointPacer
from kryten_llm.explore.digest import Digest
from kryten_llm.explore.ledger import Ledger, now
from kryten_llm.explore.output import Checkpoint, OutputStore
from kryten_llm.explore.producer import ProducerConfig, ProducerState, ProducerStatus, run_producer
from kryten_llm.explore.settings import ExploreSettings

if TYPE_CHECKING:
    from kryten_llm.llm.base import Completion
    from kryten_llm.llm.manager import ProviderManager
    from kryten_llm.pools import FallbackPool

log = structlog.get_logger(__name__)


class StopReason(enum.StrEnum):
    """Why a run ended; assigned only by :class:`Explorer`."""

    TARGET = "target"
    ITERATIONS = "iterations"
    LOW_YIELD = "low_yield"
    INTERRUPTED = "interrupted"
    STOPPED = "stopped"
    PROVIDERS_FAILED = "providers_failed"


class RunState(enum.StrEnum):
    """The explorer's lifecycle; assigned only by :class:`Explorer`."""

    CREATED = "created"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Explorer:
    """Explore a topic with several producers until a stop condition holds.

    Args:
        settings: the run's settings.
        manager: the provider manager; its providers are the ones named in ``providers``.
        providers: provider names, assigned to producers round-robin (repeats allowed).
        store: where checkpoints go; None keeps everything in memory (tests, dashboards).
        pool: a fallback pool that receives every new item accepted by ``pool_filter``.
        pool_filter: which new items go to the pool (default: all).
        clock: monotonic time.

    Raises:
        ExploreError: no provider is named, or the manager lacks one of them.
    """

    def __init__(
        self,
        settings: ExploreSettings,
        manager: ProviderManager,
        providers: Sequence[str],
        store: OutputStore | None = None,
        *,
        pool: FallbackPool | None = None,
        pool_filter: Callable[[str], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not providers:
            raise ExploreError("an exploration needs at least one provider")
        unknown = [p for p in providers if p not in manager.providers]
        if unknown:
            raise ExploreError(f"the provider manager has no provider named {unknown}")
        self.settings = settings
        self._manager = manager
        self._store = store
        self._pool = pool
        self._pool_filter = pool_filter or (lambda _line: True)
        self._clock = clock
        self._digest = Digest(max_chars=settings.digest_chars, rng=random.Random(settings.seed))
        self._ledger = Ledger(settings, self._digest)
        self._producers = [
            ProducerState(name=f"p{i}", provider=providers[i % len(providers)])
            for i in range(settings.producers)
        ]
        self._recent: deque[tuple[int, int]] = deque(maxlen=settings.yield_window)
        self._pool_pending: list[str] = []
        self.state = RunState.CREATED
        self._ran = False
        self.stop_reason: StopReason | None = None
        self._stop = asyncio.Event()
        self._pacer = CheckpointPacer(
            every_items=settings.checkpoint_items,
            every_seconds=settings.checkpoint_seconds,
            clock=clock,
        )
        self._started = 0.0
        self._previous_seconds = 0.0
        self._sessions = 0
        self._started_at = ""
        self._checkpoints = 0

    # -- lifecycle -------------------------------------------------------------------------

    def stop(self, reason: StopReason | str = StopReason.STOPPED) -> None:
        """Ask the run to end; producers are cancelled and the files written. Idempotent.

        Before :meth:`run`, the run starts stopped: it only writes the files.

        Args:
            reason: recorded as the stop reason unless one was already set.
        """
        if self.stop_reason is None:
            self.stop_reason = StopReason(reason)
        if self.state in (RunState.RUNNING, RunState.CREATED):
            self.state = RunState.STOPPING
        self._stop.set()

    def resume_from(self, checkpoint: Checkpoint) -> None:
        """Take a checkpoint's items and counters as already known (before :meth:`run`).

        Raises:
            ExploreError: the checkpoint is of another topic.
        """
        if checkpoint.topic != self.settings.topic:
            raise ExploreError(
                f"the checkpoint is of the topic {checkpoint.topic!r}, not {self.settings.topic!r}"
            )
        self._ledger.restore(checkpoint)
        state = checkpoint.state
        iterations = state.get("producer_iterations")
        if isinstance(iterations, dict):
            for producer in self._producers:
                value = iterations.get(producer.name)
                if isinstance(value, int):
                    producer.iteration = value
        self._previous_seconds = float(state.get("duration_seconds", 0.0) or 0.0)
        self._sessions = int(state.get("sessions", 0) or 0)
        self._started_at = str(state.get("started_at", "") or "")

    async def run(self) -> StopReason:
        """Run until a stop condition holds; write the files; return why it stopped.

        Raises:
            OSError: the output folder cannot be written (at the final checkpoint).
            RuntimeError: called a second time.
        """
        if self._ran:
            raise RuntimeError("an Explorer runs once")
        self._ran = True
        if self.state is RunState.CREATED:  # else stop() came first: producers end at once
            self.state = RunState.RUNNING
        self._started = self._clock()
        self._sessions += 1
        self._started_at = self._started_at or now()
        if self._ledger.target_reached():
            self.stop(StopReason.TARGET)
        config = ProducerConfig(
            topic=self.settings.topic,
            batch=self.settings.batch,
            request_timeout=self.settings.request_timeout,
            max_tokens=self.settings.max_tokens,
            instructions=self.settings.instructions,
            iterations=self.settings.iterations,
            max_consecutive_failures=self.settings.max_consecutive_failures,
            backoff_seconds=self.settings.backoff_seconds,
        )
        tasks = [
            asyncio.create_task(
                run_producer(
                    state,
                    config,
                    self._manager,
                    digest=self._digest.render,
                    ingest=self._ingest,
                    discard=self._count_usage,
                    stopping=self._stop.is_set,
                    clock=self._clock,
                ),
                name=f"explore-{state.name}",
            )
            for state in self._producers
        ]
        checkpointer = asyncio.create_task(
            self._pacer.loop(self._stop, self._checkpoint), name="explore-checkpoint"
        )
        stopper = asyncio.create_task(self._stop.wait())
        try:
            pending: set[asyncio.Task[Any]] = set(tasks)
            while pending and not self._stop.is_set():
                done, pending = await asyncio.wait(
                    pending | {stopper}, return_when=asyncio.FIRST_COMPLETED
                )
                pending.discard(stopper)
                for task in done:
                    error = None if task is stopper else task.exception()
                    if error is not None:
                        raise error
            if not self._stop.is_set():
                failed = all(p.state is ProducerStatus.FAILED for p in self._producers)
                self.stop(StopReason.PROVIDERS_FAILED if failed else StopReason.ITERATIONS)
        finally:
            self.stop()
            for task in [*tasks, stopper]:
                task.cancel()
            await asyncio.gather(*tasks, stopper, return_exceptions=True)
            self._pacer.wanted.set()
            await checkpointer  # it sees the stop and returns; never cancelled mid-write
            self.state = RunState.STOPPED  # before the last write, so metadata.json says so
            await self._checkpoint()
        assert self.stop_reason is not None
        log.info("explore_finished", reason=self.stop_reason.value, items=len(self._ledger.items))
        return self.stop_reason

    # -- answers ---------------------------------------------------------------------------

    def _ingest(self, producer: ProducerState, completion: Completion) -> None:
        """Book every line of one answer; called synchronously by a producer."""
        new, received = self._ledger.record(producer, completion)
        if self._pool is not None:
            self._pool_pending.extend(line for line in new if self._pool_filter(line))
        self._count_usage(producer, completion)
        self._pacer.added(len(new))
        self._recent.append((len(new), received))
        if self._ledger.target_reached():
            self.stop(StopReason.TARGET)
        elif len(self._recent) == self._recent.maxlen and self.settings.min_yield > 0:
            found = sum(n for n, _ in self._recent)
            lines = sum(r for _, r in self._recent)
            if (found / lines if lines else 0.0) < self.settings.min_yield:
                self.stop(StopReason.LOW_YIELD)

    def _count_usage(self, producer: ProducerState, completion: Completion) -> None:
        """Count an answer's tokens and cost (paid for, even when it came after a stop)."""
        cost = self._manager.cost(completion) or 0.0
        self._ledger.count_usage(producer.provider, completion, cost)
        self._pacer.dirty = True

    # -- checkpoints -----------------------------------------------------------------------

    async def _checkpoint(self) -> None:
        """Write the current state (in a thread); one write at a time, newest last.

        Raises:
            OSError: the store or the pool cannot be written; what was not written is kept
                for the next checkpoint.
        """
        async with self._pacer.turn():
            self._ledger.count_requests(self._producers)
            pending, self._pool_pending = self._pool_pending, []
            store, pool = self._store, self._pool
            if store is not None:
                checkpoint = Checkpoint(self.settings.topic, self.items, self._state())
                metadata = self.metadata()

            def write() -> None:
                if store is not None:
                    store.write(checkpoint, metadata)
                if pool is not None and pending:
                    pool.add(pending)

            try:
                async with self._pacer.timed():
                    await asyncio.to_thread(write)
            except OSError:
                self._pool_pending[:0] = pending  # not in the pool file: try again next time
                self._pacer.dirty = True
                raise
            if store is not None:
                self._checkpoints += 1

    def _elapsed(self) -> float:
        return (self._clock() - self._started) if self._started else 0.0

    def _state(self) -> dict[str, Any]:
        return {
            **self._ledger.state(),
            "producer_iterations": {p.name: p.iteration for p in self._producers},
            "duration_seconds": round(self._previous_seconds + self._elapsed(), 3),
            "sessions": self._sessions,
            "started_at": self._started_at,
            "stop_reason": self.stop_reason.value if self.stop_reason else None,
        }

    # -- reporting -------------------------------------------------------------------------

    @property
    def items(self) -> list[dict[str, Any]]:
        """The unique items found so far (resumed ones first), as written to output.json."""
        return list(self._ledger.items)

    def metadata(self) -> dict[str, Any]:
        """The content of ``metadata.json``: settings, counters, tokens, cost, duration."""
        totals = self._ledger.totals.as_dict()
        providers: dict[str, Any] = {}
        for name, counts in sorted(self._ledger.providers.items()):
            entry = counts.as_dict()
            provider = self._manager.providers.get(name)
            entry["model"] = provider.model if provider is not None else None
            entry["type"] = provider.type_name if provider is not None else None
            entry["producers"] = [p.name for p in self._producers if p.provider == name]
            providers[name] = entry
        return {
            "topic": self.settings.topic,
            "settings": asdict(self.settings),
            "items": len(self._ledger.items),
            "resumed_items": self._ledger.resumed,
            "counts": totals,
            "yield": totals["yield"],
            "duplicate_rate": totals["duplicate_rate"],
            "tokens": {
                "prompt": self._ledger.totals.prompt_tokens,
                "completion": self._ledger.totals.completion_tokens,
                "total": self._ledger.totals.prompt_tokens + self._ledger.totals.completion_tokens,
            },
            "cost_usd": round(self._ledger.totals.cost_usd, 6),
            "providers": providers,
            "producers": [p.as_dict() for p in self._producers],
            "sessions": self._sessions,
            "started_at": self._started_at,
            "updated_at": now(),
            "duration_seconds": round(self._previous_seconds + self._elapsed(), 3),
            "session_seconds": round(self._elapsed(), 3),
            "state": self.state.value,
            "stop_reason": self.stop_reason.value if self.stop_reason else None,
        }

    def snapshot(self) -> dict[str, Any]:
        """The live state as plain data, for progress lines and dashboards."""
        self._ledger.count_requests(self._producers)
        totals = self._ledger.totals.as_dict()
        found = sum(n for n, _ in self._recent)
        lines = sum(r for _, r in self._recent)
        return {
            "state": self.state.value,
            "topic": self.settings.topic,
            "items": len(self._ledger.items),
            "target": self.settings.target,
            "counts": totals,
            "duplicate_rate": totals["duplicate_rate"],
            "recent_yield": round(found / lines, 4) if lines else None,
            "elapsed_seconds": round(self._elapsed(), 3),
            "checkpoints": self._checkpoints,
            "providers": {
                name: {
                    "requests": c.requests,
                    "received": c.received,
                    "new": c.new,
                    "yield": c.as_dict()["yield"],
                }
                for name, c in sorted(self._ledger.providers.items())
            },
            "producers": [p.as_dict() for p in self._producers],
            "stop_reason": self.stop_reason.value if self.stop_reason else None,
        }
