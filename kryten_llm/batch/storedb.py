"""The SQLite side of the run store: schema, connections, transactions, streaming reads.

Kept apart from :mod:`kryten_llm.batch.store` (what the store means: runs, items, their
counters) so that the file format is in one place. The database runs in WAL mode: a reader
(the output writer, ``batch status`` in another process) sees a consistent snapshot while the
batch goes on writing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from kryten_llm.batch.storetypes import ItemStatus, StoredItem

SCHEMA = """
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

ITEM_COLUMNS = (
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
INSERT_ITEM = (
    f"INSERT OR REPLACE INTO batch_items ({', '.join(ITEM_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in ITEM_COLUMNS)})"
)
# The columns of a StoredItem, in its field order.
_READ_COLUMNS = ", ".join(ITEM_COLUMNS[1:16])


def now_iso() -> str:
    """The current UTC time as ISO-8601."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def connect(path: Path | str) -> sqlite3.Connection:
    """Open (creating if needed) the store at ``path`` in WAL mode.

    Raises:
        sqlite3.Error: the file cannot be opened or created, or is not a run store.
    """
    conn = sqlite3.connect(str(path), timeout=10.0, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed transaction survives a process crash (SIGKILL); only
        # a power loss may roll back the last commits, which --resume then simply redoes.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.executescript(SCHEMA)
    except BaseException:
        conn.close()
        raise
    return conn


class Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on error) on an autocommit connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")


def iter_items(path: Path | str, run_id: str) -> Iterator[StoredItem]:
    """Every stored item of a run in row order (then model), from a connection of its own.

    Used to write output files, possibly in a thread while the run goes on: WAL gives this
    reader a consistent snapshot without blocking the writer.
    """
    conn = connect(path)
    try:
        conn.execute("BEGIN")
        cursor = conn.execute(
            f"SELECT {_READ_COLUMNS} FROM batch_items WHERE run_id = ? ORDER BY row_key, model",
            (run_id,),
        )
        for row in cursor:
            (key, model, digest, status, row_json, response, error, attempts) = row[:8]
            (provider, ptok, ctok, cost, latency, extra, cached) = row[8:]
            yield StoredItem(
                row_key=key,
                model=model,
                prompt_hash=digest,
                status=ItemStatus(status),
                row_json=row_json,
                response=response,
                error=error,
                attempts=attempts,
                provider=provider,
                prompt_tokens=ptok,
                completion_tokens=ctok,
                cost_usd=cost,
                latency_ms=latency,
                extra=extra,
                cached=bool(cached),
            )
        conn.execute("COMMIT")
    finally:
        conn.close()
