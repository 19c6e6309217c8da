"""The run store: every batch run and every answered item, in SQLite (WAL).

It is what makes a batch resumable and inspectable from another process. ``batch_runs`` holds
one row per run (status, counters, the options it was started with); ``batch_items`` one row
per input row *and model*, committed as each answer arrives (answers that arrive in the same
turn of the event loop share one transaction), so a SIGKILL loses no answer the process had
finished handling; ``--resume`` asks again only what was still in flight.
``(run_id, row_key, model)`` is the primary key: an item is never stored twice, so it is never
written twice to the output, which is generated from this table.

The store owns a run's :class:`~kryten_llm.batch.storetypes.RunStatus`: each method that
changes it names the transition (:meth:`RunStore.create_run`, :meth:`RunStore.start_again`,
:meth:`RunStore.request_cancel`, :meth:`RunStore.cancel`, :meth:`RunStore.finish`). The
schema and connections are in :mod:`~kryten_llm.batch.storedb`, the typed rows in
:mod:`~kryten_llm.batch.storetypes`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kryten_llm.batch.storedb import INSERT_ITEM, Transaction, connect, now_iso
from kryten_llm.batch.storetypes import (
    CachedAnswer,
    ItemResult,
    ItemStatus,
    ModelSummary,
    RunInfo,
    RunStatus,
    process_alive,
)
from kryten_llm.errors import ConfigError, RunExists, RunNotFound

# The types and statuses are in storetypes.
__all__ = ["MAX_LOOKUP", "RunStore", "new_run_id", "process_alive"]

MAX_LOOKUP = 500  # prompt hashes per cached_answers() query (SQLite allows 999 parameters)


class RunStore:
    """Runs and items in one SQLite file, shared by concurrent processes.

    Args:
        path: the database file (``batch.db`` by default in the CLI).

    Raises:
        ConfigError: the file cannot be opened or created, or is not a run store (the
            problem is named by the path).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self._conn = connect(self.path)
        except sqlite3.Error as exc:
            raise ConfigError(
                [
                    (
                        str(self.path),
                        f"cannot open the run store {self.path} ({exc})",
                        "give a file in an existing, writable directory",
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
            RunExists: a run with ``run_id`` already exists.
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
            raise RunExists(run_id) from None
        return run_id

    def get_run(self, run_id: str) -> RunInfo | None:
        """The run ``run_id``, or None."""
        row = self._conn.execute("SELECT * FROM batch_runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else RunInfo.from_row(row).as_seen()

    def run(self, run_id: str) -> RunInfo:
        """The run ``run_id``.

        Raises:
            RunNotFound: no run has that id.
        """
        info = self.get_run(run_id)
        if info is None:
            raise RunNotFound(run_id)
        return info

    def list_runs(self, *, status: RunStatus | None = None, limit: int = 20) -> list[RunInfo]:
        """The most recent runs first, optionally only those in ``status`` (as shown: a live
        status whose process is gone is ``interrupted``)."""
        wanted = RunStatus(status) if status else None
        query = "SELECT * FROM batch_runs"
        params: tuple[Any, ...] = ()
        if wanted is not None:
            live = wanted.live or wanted is RunStatus.INTERRUPTED
            stored = ("running", "cancelling") if live else (wanted.value,)
            query += f" WHERE status IN ({', '.join('?' for _ in stored)})"
            params = stored
        query += " ORDER BY created_at DESC, rowid DESC"
        runs = (RunInfo.from_row(row).as_seen() for row in self._conn.execute(query, params))
        chosen = (run for run in runs if wanted is None or run.status is wanted)
        return [run for _, run in zip(range(limit), chosen, strict=False)]

    def latest_resumable(self, input_file: str) -> RunInfo | None:
        """The most recent unfinished run of ``input_file``."""
        row = self._conn.execute(
            "SELECT * FROM batch_runs WHERE input_file = ? AND status != 'completed' "
            "ORDER BY created_at DESC, rowid DESC LIMIT 1",
            (input_file,),
        ).fetchone()
        return None if row is None else RunInfo.from_row(row)

    def status_of(self, run_id: str) -> RunStatus | None:
        """The run's status alone (polled by the runner for cancellation)."""
        row = self._conn.execute("SELECT status FROM batch_runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else RunStatus(row[0])

    def request_cancel(self, run_id: str) -> bool:
        """``running`` -> ``cancelling``: the live process stops, then calls :meth:`finish`.

        Returns:
            True if the run was running (and is now cancelling).
        """
        return self._set_status(run_id, RunStatus.CANCELLING, only_if=(RunStatus.RUNNING,))

    def cancel(self, run_id: str) -> None:
        """Mark a run that no process is running any more ``cancelled`` (not resumed by name)."""
        self._set_status(run_id, RunStatus.CANCELLED)

    def finish(self, run_id: str, status: RunStatus) -> None:
        """Record how this process's run of ``run_id`` ended (any status but the live ones)."""
        if status in (RunStatus.RUNNING, RunStatus.CANCELLING):
            raise ValueError(f"a run cannot finish as {status}")
        self._set_status(run_id, status)

    def _set_status(
        self, run_id: str, status: RunStatus, *, only_if: Sequence[RunStatus] = ()
    ) -> bool:
        query = "UPDATE batch_runs SET status = ?, updated_at = ? WHERE id = ?"
        params: list[Any] = [status.value, now_iso(), run_id]
        if only_if:
            query += f" AND status IN ({', '.join('?' for _ in only_if)})"
            params += [s.value for s in only_if]
        return self._conn.execute(query, params).rowcount > 0

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

    def record(
        self, run_id: str, items: Sequence[ItemResult], *, rate: float | None = None
    ) -> None:
        """Store answered items and bump the run's counters, in one transaction.

        Args:
            run_id: the run.
            items: the results to store (none: only ``rate`` is recorded).
            rate: items per second lately, for ``batch status`` (None: leave it).
        """
        if not items:
            if rate is None:
                return
            self._conn.execute(
                "UPDATE batch_runs SET rate_per_second = ?, updated_at = ? WHERE id = ?",
                (rate, now_iso(), run_id),
            )
            return
        done = sum(1 for item in items if item.status is ItemStatus.DONE)
        with self._tx():
            self._conn.executemany(INSERT_ITEM, [item.values(run_id) for item in items])
            self._conn.execute(
                "UPDATE batch_runs SET completed_prompts = completed_prompts + ?, "
                "failed_prompts = failed_prompts + ?, "
                "rate_per_second = coalesce(?, rate_per_second), updated_at = ? WHERE id = ?",
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
                if row[0] == ItemStatus.DONE:
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

    def cached_answers(self, model: str, hashes: Iterable[str]) -> dict[str, CachedAnswer]:
        """Earlier answers of ``model`` to any of the prompts ``hashes``, from any run, by hash.
        One query per call; give at most :data:`MAX_LOOKUP` hashes."""
        wanted = list(dict.fromkeys(hashes))
        if not wanted:
            return {}
        found: dict[str, CachedAnswer] = {}
        rows = self._conn.execute(
            "SELECT prompt_hash, response, provider, prompt_tokens, completion_tokens, extra "
            "FROM batch_items WHERE model = ? AND status = 'done' "
            f"AND prompt_hash IN ({', '.join('?' for _ in wanted)})",
            (model, *wanted),
        ).fetchall()
        for digest, response, provider, prompt_tokens, completion_tokens, extra in rows:
            found.setdefault(
                str(digest),
                CachedAnswer(response, provider, prompt_tokens, completion_tokens, extra),
            )
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

    def _tx(self) -> Transaction:
        return Transaction(self._conn)


def new_run_id() -> str:
    """A short, sortable, unique run id: ``b`` + UTC date-time + random suffix."""
    return "b" + time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
