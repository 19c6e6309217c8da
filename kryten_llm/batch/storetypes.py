"""The typed rows the run store hands out, and the statuses a run and an item can be in.

Everything that reads the run store (the runner, the output writer, ``batch status``, the
Python API) gets these frozen values rather than tuples or ``sqlite3.Row`` mappings, so a
column added to the schema is a field added here, checked by mypy where it is used.

A run's status is a :class:`RunStatus`. Only the run store assigns one (its methods say which
transition they make: :meth:`~kryten_llm.batch.store.RunStore.create_run`,
``request_cancel``, ``finish``...); everyone else reads and compares. The values are the
strings stored in SQLite and printed in JSON, unchanged since the first release.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class RunStatus(StrEnum):
    """Where a run is in its life.

    ``running`` -> ``completed`` | ``failed`` (stopped on error) | ``paused`` (interrupted,
    resumable) | ``cancelling`` (``batch cancel`` asked a live process) -> ``cancelled``.
    ``interrupted`` is never stored: it is how a ``running`` or ``cancelling`` run whose
    process no longer exists (killed, crashed) is shown; it is resumable.
    """

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    PAUSED = "paused"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def live(self) -> bool:
        """A process is (or should be) working on the run."""
        return self in (RunStatus.RUNNING, RunStatus.CANCELLING)


RUN_STATUSES = tuple(status.value for status in RunStatus)


class ItemStatus(StrEnum):
    """How one item (one row for one model) ended; rows not in the store are still to do."""

    DONE = "done"
    FAILED = "failed"


@dataclass(slots=True)
class ItemResult:
    """One answered (or failed) item, on its way into the store."""

    row_key: int
    model: str
    prompt_hash: str
    status: ItemStatus
    row_json: str
    response: str | None = None
    error: str | None = None
    attempts: int = 0
    provider: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    latency_ms: float | None = None
    extra: str | None = None
    cached: bool = False
    started_at: float | None = None
    finished_at: float | None = None

    def values(self, run_id: str) -> tuple[Any, ...]:
        """The ``batch_items`` columns in schema order (see ``storedb.ITEM_COLUMNS``)."""
        return (
            run_id,
            self.row_key,
            self.model,
            self.prompt_hash,
            self.status.value,
            self.row_json,
            self.response,
            self.error,
            self.attempts,
            self.provider,
            self.prompt_tokens,
            self.completion_tokens,
            self.cost_usd,
            self.latency_ms,
            self.extra,
            int(self.cached),
            self.started_at,
            self.finished_at,
        )


@dataclass(frozen=True, slots=True)
class StoredItem:
    """One row of ``batch_items``, as read back (output files, ``BatchResult.records``)."""

    row_key: int
    model: str
    prompt_hash: str
    status: ItemStatus
    row_json: str
    response: str | None
    error: str | None
    attempts: int
    provider: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: float | None
    latency_ms: float | None
    extra: str | None
    cached: bool


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """An answer an earlier run got from the same model to the same prompt (reused as is)."""

    response: str | None
    provider: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    extra: str | None


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One row of ``batch_runs``."""

    id: str
    created_at: str
    updated_at: str
    input_file: str | None
    output_file: str | None
    model: str
    total_prompts: int | None
    completed_prompts: int
    failed_prompts: int
    status: RunStatus
    rate_per_second: float
    pid: int | None
    config: dict[str, Any]

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> RunInfo:
        """From ``SELECT * FROM batch_runs`` (columns in schema order)."""
        (
            rid,
            created,
            updated,
            infile,
            outfile,
            model,
            total,
            done,
            failed,
            status,
            rate,
            pid,
            cfg,
        ) = row
        return cls(
            id=rid,
            created_at=created,
            updated_at=updated,
            input_file=infile,
            output_file=outfile,
            model=model,
            total_prompts=total,
            completed_prompts=done,
            failed_prompts=failed,
            status=RunStatus(status),
            rate_per_second=rate,
            pid=pid,
            config=json.loads(cfg),
        )

    def as_seen(self) -> RunInfo:
        """This run as shown: ``interrupted`` when its status is live but its process is gone
        (this process's own runs are alive by definition)."""
        if not self.status.live or self.pid == os.getpid() or process_alive(self.pid):
            return self
        return dataclasses.replace(self, status=RunStatus.INTERRUPTED)

    @property
    def remaining(self) -> int | None:
        """Items still to do, when the total is known."""
        if self.total_prompts is None:
            return None
        return max(self.total_prompts - self.completed_prompts - self.failed_prompts, 0)

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the last measured rate (None when unknown)."""
        if self.remaining is None or self.rate_per_second <= 0:
            return None
        if self.status is not RunStatus.RUNNING:
            return None
        return self.remaining / self.rate_per_second

    def as_dict(self) -> dict[str, Any]:
        """The run as JSON-ready data (``batch list/status --json``)."""
        return {
            "id": self.id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "input_file": self.input_file,
            "output_file": self.output_file,
            "model": self.model,
            "total_prompts": self.total_prompts,
            "completed_prompts": self.completed_prompts,
            "failed_prompts": self.failed_prompts,
            "status": self.status.value,
            "rate_per_second": round(self.rate_per_second, 3),
            "eta_seconds": None if self.eta_seconds is None else round(self.eta_seconds, 1),
        }


@dataclass(frozen=True, slots=True)
class ModelSummary:
    """The figures of one model over a whole run."""

    model: str
    items: int
    successes: int
    failures: int
    requests: int
    mean_latency_ms: float | None
    p95_latency_ms: float | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    cached: int

    def as_dict(self) -> dict[str, Any]:
        """The figures as JSON-ready data."""
        return {
            "model": self.model,
            "items": self.items,
            "requests": self.requests,
            "successes": self.successes,
            "failures": self.failures,
            "cached": self.cached,
            "mean_latency_ms": _round(self.mean_latency_ms),
            "p95_latency_ms": _round(self.p95_latency_ms),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": None if self.cost_usd is None else round(self.cost_usd, 6),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def process_alive(pid: int | None) -> bool:
    """Whether another process ``pid`` exists (a run left 'running' by a crash has none)."""
    if not pid or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
