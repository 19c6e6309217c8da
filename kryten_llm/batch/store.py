"""The run store: every batch run and every answered item, in SQLite (WAL).

It is what makes a batch resumable and inspectable from another process. ``batch_runs`` holds
one row per run (status, counters, the options it was started with); ``batch_items`` one row
per input row *and model*, written as each answer arrives (in short batched transactions), so
a SIGKILL loses at most the answers of the last fraction of a second, which ``--resume``
asks again. ``(run_id, row_key, model)`` is the primary key: an item is never stored twice, so
it is never written twice to the output, which is generated from this table.

Statuses of a run: ``running``, ``completed``, ``failed`` (stopped on error), ``paused``
(interrupted), ``cancelling`` (asked to stop by ``batch cancel``) then ``cancelled``.
Items are ``done`` or ``failed``; rows not in the table are still to do.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kryten_llm.errors import ConfigError

MAX_LOOKUP = 500  # prompt hashes per cached_answers() query (SQLite allows 999 parameters)
RUN_STATUSES = ("running", "completed", "failed", "paused", "cancelling", "cancelled")
FINAL_STATUSES = ("completed", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batch_runs (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    input_file TEXT,
    output_file TEXT,
    model TEXT NOT NULL,
    total_prompts INTEGER,
    completed_prompts INTEGER NOT NULL DEFAULT 0,
    failed_prompts INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    rate_per_second REAL NOT NULL DEFAULT 0,
    pid INTEGER,
    config TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_items (
    run_id TEXT NOT NULL,
    row_key INTEGER NOT NULL,
    model TEXT NOT NULL,
    prompt_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    row_json TEXT NOT NULL,
    response TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    provider TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    cost_usd REAL,
    latency_ms REAL,
    extra TEXT,
    cached INTEGER NOT NULL DEFAULT 0,
    started_at REAL,
    finished_at REAL,
    PRIMARY KEY (run_id, row_key, model)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS batch_items_answered
    ON batch_items (model, prompt_hash) WHERE status = 'done';
"""

_ITEM_COLUMNS = (
    "run_id",
    "row_key",
    "model",
    "prompt_hash",
    "status",
    "row_json",
    "response",
    "error",
    "attempts",
    "provider",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "latency_ms",
    "extra",
    "cached",
    "started_at",
    "finished_at",
)
_INSERT = (
    f"INSERT OR REPLACE INTO batch_items ({', '.join(_ITEM_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _ITEM_COLUMNS)})"
)


def now_iso() -> str:
    """The current UTC time as ISO-8601."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(slots=True)
class ItemResult:
    """One answered (or failed) item, as stored."""

    row_key: int
    model: str
    prompt_hash: str
    status: str  # done | failed
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
        return (
            run_id,
            self.row_key,
            self.model,
            self.prompt_hash,
            self.status,
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
    status: str
    rate_per_second: float
    pid: int | None
    config: dict[str, Any]

    @property
    def remaining(self) -> int | None:
        if self.total_prompts is None:
            return None
        return max(self.total_prompts - self.completed_prompts - self.failed_prompts, 0)

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the last measured rate (None when unknown)."""
        if self.remaining is None or self.rate_per_second <= 0 or self.status != "running":
            return None
        return self.remaining / self.rate_per_second

    def as_dict(self) -> dict[str, Any]:
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
            "status": self.status,
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


def connect(path: Path | str) -> sqlite3.Connection:
    """Open (creating if needed) the store at ``path`` in WAL mode."""
    conn = sqlite3.connect(str(path), timeout=10.0, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed transaction survives a process crash (SIGKILL); only
        # a power loss may roll back the last commits, which --resume then simply redoes.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.executescript(_SCHEMA)
    except BaseException:
        conn.close()
        raise
    return conn


class RunStore:
    """Runs and items in one SQLite file, shared by concurrent processes.

    Args:
        path: the database file (``batch.db`` by default in the CLI).

    Raises:
        ConfigError: the file cannot be opened or created, or is not a run store.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self._conn = connect(self.path)
        except sqlite3.Error as exc:
            raise ConfigError(
                [
                    (
                        "--db",
                        f"cannot open the run store {self.path} ({exc})",
                        "give a file in an existing, writable directory (default ./batch.db)",
                    )
                ]
            ) from None

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._conn.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- runs

    def create_run(
        self,
        *,
        run_id: str | None,
        input_file: str | None,
        output_file: str | None,
        models: Sequence[str],
        config: Mapping[str, Any],
    ) -> str:
        """Insert a new run in status ``running``; returns its id.

        Raises:
            ValueError: a run with ``run_id`` already exists.
        """
        run_id = run_id or new_run_id()
        stamp = now_iso()
        try:
            self._conn.execute(
                "INSERT INTO batch_runs (id, created_at, updated_at, input_file, output_file, "
                "model, status, pid, config) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?)",
                (
                    run_id,
                    stamp,
                    stamp,
                    input_file,
                    output_file,
                    ",".join(models),
                    os.getpid(),
                    json.dumps(dict(config)),
                ),
            )
        except sqlite3.IntegrityError:
            raise ValueError(f"batch {run_id!r} already exists") from None
        return run_id

    def get_run(self, run_id: str) -> RunInfo | None:
        """The run ``run_id``, or None."""
        row = self._conn.execute("SELECT * FROM batch_runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else _run(row)

    def list_runs(self, *, status: str | None = None, limit: int = 20) -> list[RunInfo]:
        """The most recent runs first, optionally only those in ``status``."""
        query = "SELECT * FROM batch_runs"
        params: tuple[Any, ...] = ()
        if status:
            query += " WHERE status = ?"
            params = (status,)
        query += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
        rows = self._conn.execute(query, (*params, limit)).fetchall()
        return [_run(row) for row in rows]

    def latest_resumable(self, input_file: str) -> RunInfo | None:
        """The most recent unfinished run of ``input_file``."""
        row = self._conn.execute(
            "SELECT * FROM batch_runs WHERE input_file = ? AND status != 'completed' "
            "ORDER BY created_at DESC, rowid DESC LIMIT 1",
            (input_file,),
        ).fetchone()
        return None if row is None else _run(row)

    def set_status(self, run_id: str, status: str, *, only_if: Sequence[str] = ()) -> bool:
        """Set a run's status (only from one of ``only_if`` when given); True if changed."""
        query = "UPDATE batch_runs SET status = ?, updated_at = ? WHERE id = ?"
        params: list[Any] = [status, now_iso(), run_id]
        if only_if:
            query += f" AND status IN ({', '.join('?' for _ in only_if)})"
            params += list(only_if)
        return self._conn.execute(query, params).rowcount > 0

    def status_of(self, run_id: str) -> str | None:
        """The run's status alone (polled by the runner for cancellation)."""
        row = self._conn.execute("SELECT status FROM batch_runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else str(row[0])

    def start_again(self, run_id: str, *, output_file: str | None) -> None:
        """Reopen a run for ``--resume``: forget its failures (they are retried), recount."""
        with self._tx():
            self._conn.execute(
                "DELETE FROM batch_items WHERE run_id = ? AND status != 'done'", (run_id,)
            )
            done = self._conn.execute(
                "SELECT count(*) FROM batch_items WHERE run_id = ?", (run_id,)
            ).fetchone()[0]
            self._conn.execute(
                "UPDATE batch_runs SET status = 'running', completed_prompts = ?, "
                "failed_prompts = 0, pid = ?, updated_at = ?, "
                "output_file = coalesce(?, output_file) WHERE id = ?",
                (done, os.getpid(), now_iso(), output_file, run_id),
            )

    def set_total(self, run_id: str, total: int | None) -> None:
        """Record how many items the run has (rows times models)."""
        self._conn.execute("UPDATE batch_runs SET total_prompts = ? WHERE id = ?", (total, run_id))

    # ---- items

    def record(self, run_id: str, items: Sequence[ItemResult], *, rate: float) -> None:
        """Store answered items and bump the run's counters, in one transaction."""
        if not items:
            self._conn.execute(
                "UPDATE batch_runs SET rate_per_second = ?, updated_at = ? WHERE id = ?",
                (rate, now_iso(), run_id),
            )
            return
        done = sum(1 for item in items if item.status == "done")
        with self._tx():
            self._conn.executemany(_INSERT, [item.values(run_id) for item in items])
            self._conn.execute(
                "UPDATE batch_runs SET completed_prompts = completed_prompts + ?, "
                "failed_prompts = failed_prompts + ?, rate_per_second = ?, updated_at = ? "
                "WHERE id = ?",
                (done, len(items) - done, rate, now_iso(), run_id),
            )

    def has_items(self, run_id: str) -> bool:
        """Whether the run already has stored items (so rows must be checked before asking)."""
        row = self._conn.execute(
            "SELECT 1 FROM batch_items WHERE run_id = ? LIMIT 1", (run_id,)
        ).fetchone()
        return row is not None

    def answered_elsewhere(self, run_id: str, model: str) -> bool:
        """Whether another run holds answers from ``model`` (so the cache must be consulted)."""
        row = self._conn.execute(
            "SELECT 1 FROM batch_items WHERE model = ? AND status = 'done' AND run_id != ? LIMIT 1",
            (model, run_id),
        ).fetchone()
        return row is not None

    def stored_hashes(self, run_id: str, first: int, last: int) -> dict[tuple[int, str], str]:
        """The prompt hash of every stored item of rows ``first`` to ``last`` (inclusive), by
        (row_key, model): one query for a whole chunk of rows."""
        rows = self._conn.execute(
            "SELECT row_key, model, prompt_hash FROM batch_items "
            "WHERE run_id = ? AND row_key BETWEEN ? AND ?",
            (run_id, first, last),
        ).fetchall()
        return {(int(key), str(model)): str(digest) for key, model, digest in rows}

    def forget(self, run_id: str, items: Sequence[tuple[int, str]]) -> None:
        """Delete stored items (row_key, model) and take them off the run's counters.

        Used on ``--resume`` for rows whose prompt changed since they were answered (the input
        file was edited): they are asked again and stored anew, never twice.
        """
        with self._tx():
            done = failed = 0
            for row_key, model in items:
                key = (run_id, row_key, model)
                where = "WHERE run_id = ? AND row_key = ? AND model = ?"
                row = self._conn.execute(f"SELECT status FROM batch_items {where}", key).fetchone()
                if row is None:
                    continue
                self._conn.execute(f"DELETE FROM batch_items {where}", key)
                if row[0] == "done":
                    done += 1
                else:
                    failed += 1
            self._conn.execute(
                "UPDATE batch_runs SET completed_prompts = max(completed_prompts - ?, 0), "
                "failed_prompts = max(failed_prompts - ?, 0), updated_at = ? WHERE id = ?",
                (done, failed, now_iso(), run_id),
            )

    def forget_rows_from(self, run_id: str, first: int) -> int:
        """Forget the stored items of rows ``first`` and after (the input got shorter since
        they were answered); returns how many were deleted."""
        where = "WHERE run_id = ? AND row_key >= ?"
        with self._tx():
            done, total = self._conn.execute(
                f"SELECT coalesce(sum(status = 'done'), 0), count(*) FROM batch_items {where}",
                (run_id, first),
            ).fetchone()
            if not total:
                return 0
            self._conn.execute(f"DELETE FROM batch_items {where}", (run_id, first))
            self._conn.execute(
                "UPDATE batch_runs SET completed_prompts = max(completed_prompts - ?, 0), "
                "failed_prompts = max(failed_prompts - ?, 0), updated_at = ? WHERE id = ?",
                (done, total - done, now_iso(), run_id),
            )
        return int(total)

    def cached_answers(self, model: str, hashes: Iterable[str]) -> dict[str, tuple[Any, ...]]:
        """Earlier answers of ``model`` to any of the prompts ``hashes``, from any run, by hash:
        (response, provider, prompt_tokens, completion_tokens, extra). One query per call;
        give at most :data:`MAX_LOOKUP` hashes."""
        wanted = list(dict.fromkeys(hashes))
        if not wanted:
            return {}
        found: dict[str, tuple[Any, ...]] = {}
        rows = self._conn.execute(
            "SELECT prompt_hash, response, provider, prompt_tokens, completion_tokens, extra "
            "FROM batch_items WHERE model = ? AND status = 'done' "
            f"AND prompt_hash IN ({', '.join('?' for _ in wanted)})",
            (model, *wanted),
        ).fetchall()
        for digest, *answer in rows:
            found.setdefault(str(digest), tuple(answer))
        return found

    def summary(self, run_id: str) -> list[ModelSummary]:
        """Per-model figures over the whole run (including earlier, resumed attempts)."""
        out = []
        rows = self._conn.execute(
            "SELECT model, count(*), sum(status = 'done'), sum(attempts), "
            "avg(CASE WHEN status = 'done' AND cached = 0 THEN latency_ms END), "
            "coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0), "
            "sum(cost_usd), sum(cached) FROM batch_items WHERE run_id = ? "
            "GROUP BY model ORDER BY model",
            (run_id,),
        ).fetchall()
        for model, items, done, attempts, mean, ptok, ctok, cost, cached in rows:
            out.append(
                ModelSummary(
                    model=model,
                    items=items,
                    successes=done or 0,
                    failures=items - (done or 0),
                    requests=attempts or 0,
                    mean_latency_ms=mean,
                    p95_latency_ms=self._p95(run_id, model),
                    prompt_tokens=ptok,
                    completion_tokens=ctok,
                    cost_usd=cost,
                    cached=cached or 0,
                )
            )
        return out

    def _p95(self, run_id: str, model: str) -> float | None:
        where = (
            "WHERE run_id = ? AND model = ? AND status = 'done' AND cached = 0 "
            "AND latency_ms IS NOT NULL"
        )
        count = self._conn.execute(
            f"SELECT count(*) FROM batch_items {where}", (run_id, model)
        ).fetchone()[0]
        if not count:
            return None
        # Nearest rank: the smallest value with at least 95 % of the values at or below it.
        offset = max(-(-95 * count // 100) - 1, 0)
        row = self._conn.execute(
            f"SELECT latency_ms FROM batch_items {where} ORDER BY latency_ms LIMIT 1 OFFSET ?",
            (run_id, model, offset),
        ).fetchone()
        return float(row[0])

    def _tx(self) -> _Transaction:
        return _Transaction(self._conn)


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on error) on an autocommit connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")


def iter_items(path: Path | str, run_id: str) -> Iterator[Mapping[str, Any]]:
    """Every stored item of a run in row order (then model), from a connection of its own.

    Used to write output files, possibly in a thread while the run goes on: WAL gives this
    reader a consistent snapshot without blocking the writer.
    """
    conn = connect(path)
    conn.row_factory = sqlite3.Row
    try:
        conn.execute("BEGIN")
        cursor = conn.execute(
            "SELECT * FROM batch_items WHERE run_id = ? ORDER BY row_key, model", (run_id,)
        )
        yield from cursor
        conn.execute("COMMIT")
    finally:
        conn.close()


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


def new_run_id() -> str:
    """A short, sortable, unique run id: ``b`` + UTC date-time + random suffix."""
    return "b" + time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def _run(row: Sequence[Any]) -> RunInfo:
    (
        run_id,
        created,
        updated,
        input_file,
        output_file,
        model,
        total,
        completed,
        failed,
        status,
        rate,
        pid,
        config,
    ) = row
    return RunInfo(
        id=run_id,
        created_at=created,
        updated_at=updated,
        input_file=input_file,
        output_file=output_file,
        model=model,
        total_prompts=total,
        completed_prompts=completed,
        failed_prompts=failed,
        status=status,
        rate_per_second=rate,
        pid=pid,
        config=json.loads(config),
    )
