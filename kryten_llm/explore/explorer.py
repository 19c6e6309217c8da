"""The topic explorer: N producers, one duplicate check, checkpoints, stop conditions.

This is where the pieces of :mod:`kryten_llm.explore` meet. :class:`Explorer` runs producers
(:mod:`~kryten_llm.explore.producer`) spread round-robin over the chosen providers; every
answer is parsed (:mod:`~kryten_llm.explore.normalize`) and each line is classified once, in
the event loop, against every item from every producer (:mod:`~kryten_llm.explore.dedup`):
rejected (a header, too long, nothing left after normalising), exact duplicate, near duplicate,
or new. So ``received = new + exact + near + rejected`` holds, per provider and in total.

A run stops at the first of: the target count of unique items, every producer out of
iterations, a yield of new items below ``min_yield`` over the last ``yield_window`` answers,
:meth:`Explorer.stop` (Ctrl+C in the CLI, a dashboard button later), or every producer failed.

Progress is checkpointed (:mod:`~kryten_llm.explore.output`) after ``checkpoint_items`` new
items or ``checkpoint_seconds``, whichever comes first, and once more at the end; writes run in a
thread, one at a time, newest state last. Every checkpoint rewrites the whole run, so a write
that took W seconds is followed by a pause of at least ``WRITE_PAUSE_FACTOR`` x W: rewriting
stays a small share of the time (not O(n^2) I/O) however long the run grows. A write that fails
keeps its pool lines for the next one. :meth:`Explorer.snapshot` gives the live state as plain
data.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from kryten_llm.errors import ConfigError
from kryten_llm.explore.dedup import DEFAULT_THRESHOLD, DedupIndex, Verdict
from kryten_llm.explore.digest import DEFAULT_MAX_CHARS, Digest
from kryten_llm.explore.items import is_header, parse_items
from kryten_llm.explore.output import Checkpoint, OutputStore
from kryten_llm.explore.producer import ProducerConfig, ProducerState, run_producer

if TYPE_CHECKING:
    from kryten_llm.llm.base import Completion
    from kryten_llm.llm.manager import ProviderManager
    from kryten_llm.pools import FallbackPool

log = structlog.get_logger(__name__)

# A checkpoint that took W seconds is followed by at least this many times W without one.
WRITE_PAUSE_FACTOR = 10.0


class StopReason(enum.StrEnum):
    """Why a run ended."""

    TARGET = "target"
    ITERATIONS = "iterations"
    LOW_YIELD = "low_yield"
    INTERRUPTED = "interrupted"
    STOPPED = "stopped"
    PROVIDERS_FAILED = "providers_failed"


class RunState(enum.StrEnum):
    """The explorer's lifecycle."""

    CREATED = "created"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class ExploreSettings:
    """Everything that shapes one run (recorded in ``metadata.json``).

    ``iterations`` counts requests per producer in this session; ``target`` counts unique
    items over the whole run, resumed sessions included.
    """

    topic: str
    producers: int = 2
    iterations: int | None = None
    target: int | None = None
    min_yield: float = 0.05
    yield_window: int = 20
    similarity: float = DEFAULT_THRESHOLD
    batch: int = 20
    max_item_chars: int = 200
    request_timeout: float = 60.0
    max_tokens: int | None = None
    checkpoint_items: int = 50
    checkpoint_seconds: float = 1.0
    digest_chars: int = DEFAULT_MAX_CHARS
    instructions: str = ""
    max_consecutive_failures: int = 5
    backoff_seconds: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.producers < 1:
            raise ValueError("producers must be at least 1")
        if not 0 < self.similarity <= 1:
            raise ValueError("similarity must be in (0, 1]")


@dataclass(slots=True)
class Counts:
    """Counters of one provider or of the whole run; received = new + exact + near + rejected."""

    requests: int = 0
    failures: int = 0
    responses: int = 0
    received: int = 0
    new: int = 0
    exact_duplicates: int = 0
    near_duplicates: int = 0
    rejected: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    @classmethod
    def from_dict(cls, data: Any) -> Counts:
        counts = cls()
        if isinstance(data, dict):
            for name in cls.__dataclass_fields__:
                value = data.get(name)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    setattr(counts, name, type(getattr(counts, name))(value))
        return counts

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["yield"] = round(self.new / self.received, 4) if self.received else None
        dups = self.exact_duplicates + self.near_duplicates
        data["duplicate_rate"] = round(dups / self.received, 4) if self.received else None
        data["cost_usd"] = round(self.cost_usd, 6)
        return data


@dataclass(slots=True)
class _Providers:
    totals: dict[str, Counts] = field(default_factory=dict)

    def of(self, name: str) -> Counts:
        return self.totals.setdefault(name, Counts())


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
            raise ValueError("at least one provider is needed")
        unknown = [p for p in providers if p not in manager.providers]
        if unknown:
            raise ValueError(f"unknown providers {unknown}")
        self.settings = settings
        self._manager = manager
        self._store = store
        self._pool = pool
        self._pool_filter = pool_filter or (lambda _line: True)
        self._clock = clock
        rng = random.Random(settings.seed)
        self._index = DedupIndex(settings.similarity)
        self._digest = Digest(max_chars=settings.digest_chars, rng=rng)
        self._items: list[dict[str, Any]] = []
        self._totals = Counts()
        self._providers = _Providers()
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
        self._checkpoint_wanted = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._dirty = False
        self._new_since_checkpoint = 0
        self._started = 0.0
        self._previous_seconds = 0.0
        self._sessions = 0
        self._started_at = ""
        self._resumed = 0
        self._checkpoints = 0
        self._write_seconds = 0.0  # how long the last checkpoint write took
        self._written_at: float | None = None  # when it ended (clock time)

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
            ConfigError: the checkpoint is of another topic.
        """
        if checkpoint.topic != self.settings.topic:
            raise ConfigError(
                [
                    (
                        "--output",
                        f"the folder holds the topic {checkpoint.topic!r}",
                        "use the same --topic, or another --output folder",
                    )
                ]
            )
        for item in checkpoint.items:
            self._index.add(item["text"])
            self._digest.observe(item["text"])
            self._items.append(item)
        state = checkpoint.state
        self._totals = Counts.from_dict(state.get("totals"))
        providers = state.get("providers")
        if isinstance(providers, dict):
            for name, data in providers.items():
                self._providers.totals[str(name)] = Counts.from_dict(data)
        iterations = state.get("producer_iterations")
        if isinstance(iterations, dict):
            for producer in self._producers:
                value = iterations.get(producer.name)
                if isinstance(value, int):
                    producer.iteration = value
        self._previous_seconds = float(state.get("duration_seconds", 0.0) or 0.0)
        self._sessions = int(state.get("sessions", 0) or 0)
        self._started_at = str(state.get("started_at", "") or "")
        self._resumed = len(checkpoint.items)
        # Items the checkpoint holds beyond its counters (none, unless edited) still add up.
        missing = len(self._items) - self._totals.new
        if missing > 0:
            self._totals.new += missing
            self._totals.received += missing

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
        self._started_at = self._started_at or _now()
        if self._target_reached():
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
        checkpointer = asyncio.create_task(self._checkpoint_loop(), name="explore-checkpoint")
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
                failed = all(p.state == "failed" for p in self._producers)
                self.stop(StopReason.PROVIDERS_FAILED if failed else StopReason.ITERATIONS)
        finally:
            self.stop()
            for task in [*tasks, stopper]:
                task.cancel()
            await asyncio.gather(*tasks, stopper, return_exceptions=True)
            self._checkpoint_wanted.set()
            await checkpointer  # it sees the stop and returns; never cancelled mid-write
            self.state = RunState.STOPPED  # before the last write, so metadata.json says so
            await self._checkpoint()
        assert self.stop_reason is not None
        log.info("explore_finished", reason=self.stop_reason.value, items=len(self._items))
        return self.stop_reason

    # -- answers ---------------------------------------------------------------------------

    def _ingest(self, producer: ProducerState, completion: Completion) -> None:
        """Classify every line of one answer; called synchronously by a producer."""
        totals = self._totals
        by_provider = self._providers.of(producer.provider)
        new = received = 0
        for line in parse_items(completion.text):
            if self._target_reached():
                break
            received += 1
            if is_header(line) or len(line) > self.settings.max_item_chars:
                kind = "rejected"
            else:
                verdict = self._index.check_and_add(line).verdict
                kind = {
                    Verdict.NEW: "new",
                    Verdict.EXACT: "exact_duplicates",
                    Verdict.NEAR: "near_duplicates",
                    Verdict.EMPTY: "rejected",
                }[verdict]
            for counts in (totals, by_provider):
                setattr(counts, kind, getattr(counts, kind) + 1)
            if kind == "new":
                new += 1
                self._items.append(
                    {
                        "text": line,
                        "producer": producer.name,
                        "provider": producer.provider,
                        "model": completion.model,
                        "iteration": producer.iteration,
                        "time": _now(),
                    }
                )
                self._digest.observe(line)
                if self._pool is not None and self._pool_filter(line):
                    self._pool_pending.append(line)
        totals.received += received
        by_provider.received += received
        self._count_usage(producer, completion)
        self._new_since_checkpoint += new
        if self._new_since_checkpoint >= self.settings.checkpoint_items:
            self._checkpoint_wanted.set()
        self._recent.append((new, received))
        if self._target_reached():
            self.stop(StopReason.TARGET)
        elif len(self._recent) == self._recent.maxlen and self.settings.min_yield > 0:
            found = sum(n for n, _ in self._recent)
            lines = sum(r for _, r in self._recent)
            if (found / lines if lines else 0.0) < self.settings.min_yield:
                self.stop(StopReason.LOW_YIELD)

    def _count_usage(self, producer: ProducerState, completion: Completion) -> None:
        """Count an answer's tokens and cost (paid for, even when it came after a stop)."""
        cost = self._manager.cost(completion) or 0.0
        usage = completion.usage
        for counts in (self._totals, self._providers.of(producer.provider)):
            counts.responses += 1
            if usage is not None:
                counts.prompt_tokens += usage.prompt_tokens
                counts.completion_tokens += usage.completion_tokens
            counts.cost_usd += cost
        self._dirty = True

    def _target_reached(self) -> bool:
        target = self.settings.target
        return target is not None and len(self._items) >= target

    # -- checkpoints -----------------------------------------------------------------------

    async def _checkpoint_loop(self) -> None:
        while not self._stop.is_set():
            pause = WRITE_PAUSE_FACTOR * self._write_seconds
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._checkpoint_wanted.wait(), max(self.settings.checkpoint_seconds, pause)
                )
            if self._written_at is not None:  # wanted early (item count): still pause
                rest = self._written_at + pause - self._clock()
                if rest > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), rest)
            if self._stop.is_set():
                return
            self._checkpoint_wanted.clear()
            if self._dirty:
                try:
                    await self._checkpoint()
                except OSError as exc:  # the final checkpoint raises it to the caller
                    log.error("explore_checkpoint_failed", error=str(exc))

    async def _checkpoint(self) -> None:
        """Write the current state (in a thread); one write at a time, newest last.

        Raises:
            OSError: the store or the pool cannot be written; what was not written is kept
                for the next checkpoint.
        """
        async with self._write_lock:
            self._refresh_request_counts()
            self._dirty = False
            self._new_since_checkpoint = 0
            pending, self._pool_pending = self._pool_pending, []
            store, pool = self._store, self._pool
            if store is not None:
                checkpoint = Checkpoint(self.settings.topic, list(self._items), self._state())
                metadata = self.metadata()

            def write() -> None:
                if store is not None:
                    store.write(checkpoint, metadata)
                if pool is not None and pending:
                    pool.add(pending)

            started = self._clock()
            try:
                await asyncio.to_thread(write)
            except OSError:
                self._pool_pending[:0] = pending  # not in the pool file: try again next time
                self._dirty = True
                raise
            finally:
                self._written_at = self._clock()
                self._write_seconds = self._written_at - started
            if store is not None:
                self._checkpoints += 1

    def _refresh_request_counts(self) -> None:
        """Fold the producers' request and failure counts into the counters."""
        for producer in self._producers:
            requests = producer.session_requests - producer.counted_requests
            failures = producer.failures - producer.counted_failures
            if requests or failures:
                for counts in (self._totals, self._providers.of(producer.provider)):
                    counts.requests += requests
                    counts.failures += failures
            producer.counted_requests = producer.session_requests
            producer.counted_failures = producer.failures

    def _elapsed(self) -> float:
        return (self._clock() - self._started) if self._started else 0.0

    def _state(self) -> dict[str, Any]:
        return {
            "totals": asdict(self._totals),
            "providers": {name: asdict(c) for name, c in self._providers.totals.items()},
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
        return list(self._items)

    def metadata(self) -> dict[str, Any]:
        """The content of ``metadata.json``: settings, counters, tokens, cost, duration."""
        totals = self._totals.as_dict()
        providers: dict[str, Any] = {}
        for name, counts in sorted(self._providers.totals.items()):
            entry = counts.as_dict()
            provider = self._manager.providers.get(name)
            entry["model"] = provider.model if provider is not None else None
            entry["type"] = provider.type_name if provider is not None else None
            entry["producers"] = [p.name for p in self._producers if p.provider == name]
            providers[name] = entry
        return {
            "topic": self.settings.topic,
            "settings": asdict(self.settings),
            "items": len(self._items),
            "resumed_items": self._resumed,
            "counts": totals,
            "yield": totals["yield"],
            "duplicate_rate": totals["duplicate_rate"],
            "tokens": {
                "prompt": self._totals.prompt_tokens,
                "completion": self._totals.completion_tokens,
                "total": self._totals.prompt_tokens + self._totals.completion_tokens,
            },
            "cost_usd": round(self._totals.cost_usd, 6),
            "providers": providers,
            "producers": [p.as_dict() for p in self._producers],
            "sessions": self._sessions,
            "started_at": self._started_at,
            "updated_at": _now(),
            "duration_seconds": round(self._previous_seconds + self._elapsed(), 3),
            "session_seconds": round(self._elapsed(), 3),
            "state": self.state.value,
            "stop_reason": self.stop_reason.value if self.stop_reason else None,
        }

    def snapshot(self) -> dict[str, Any]:
        """The live state as plain data, for progress lines and dashboards."""
        self._refresh_request_counts()
        totals = self._totals.as_dict()
        found = sum(n for n, _ in self._recent)
        lines = sum(r for _, r in self._recent)
        return {
            "state": self.state.value,
            "topic": self.settings.topic,
            "items": len(self._items),
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
                for name, c in sorted(self._providers.totals.items())
            },
            "producers": [p.as_dict() for p in self._producers],
            "stop_reason": self.stop_reason.value if self.stop_reason else None,
        }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
