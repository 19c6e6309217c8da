"""Reading answers back from the run store: ``batch show ID`` and ``batch logs``.

What ``llm logs`` is to ``llm`` users. The store keeps each item's input row, not its prompt,
so the prompt is rendered again from the row with the run's recorded template (the text
itself, even when it came from a ``--prompt-file`` edited since). Items are read through a
connection of their own (:func:`~kryten_llm.batch.storedb.connect`), so this works while a run
is writing.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kryten_llm.batch.storedb import connect
from kryten_llm.batch.templates import PromptTemplate, cell_text
from kryten_llm.errors import ConfigError, KrytenLLMError, RunNotFound

_COLUMNS = "i.run_id, i.row_key, i.model, i.status, i.row_json, i.response, i.error, r.config"


@dataclass(frozen=True, slots=True)
class ShownItem:
    """One stored item as ``show`` and ``logs`` print it."""

    run_id: str
    row: int
    model: str
    status: str
    prompt: str | None
    response: str | None
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (``--json``)."""
        return {
            "batch_id": self.run_id,
            "row": self.row,
            "model": self.model,
            "status": self.status,
            "prompt": self.prompt,
            "response": self.response,
            "error": self.error,
        }


def run_items(db: Path, run_id: str, *, limit: int | None, failed: bool) -> list[ShownItem]:
    """The items of run ``run_id`` in row order (then model): the first ``limit``.

    Args:
        db: the run store.
        run_id: the run.
        limit: how many items (None: all).
        failed: only failed items.

    Raises:
        RunNotFound: no run has that id.
    """
    conn = _connect(db)
    try:
        if conn.execute("SELECT 1 FROM batch_runs WHERE id = ?", (run_id,)).fetchone() is None:
            raise RunNotFound(run_id)
        query = f"SELECT {_COLUMNS} FROM batch_items i JOIN batch_runs r ON r.id = i.run_id "
        query += "WHERE i.run_id = ?" + (" AND i.status = 'failed'" if failed else "")
        query += " ORDER BY i.row_key, i.model LIMIT ?"
        rows = conn.execute(query, (run_id, -1 if limit is None else limit)).fetchall()
    finally:
        conn.close()
    return [_shown(row) for row in rows]


def recent_items(
    db: Path, *, limit: int, search: str | None = None, model: str | None = None
) -> list[ShownItem]:
    """The ``limit`` most recently finished items of every run, oldest first.

    Args:
        db: the run store.
        limit: how many.
        search: only items whose answer or input row contains this text (any case).
        model: only items of this model: the full label or the model name after its ``/``.
    """
    where, params = [], []
    if search:
        where.append("(i.response LIKE ? ESCAPE '\\' OR i.row_json LIKE ? ESCAPE '\\')")
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params += [pattern + "%"] * 2
    if model:
        where.append("(i.model = ? OR substr(i.model, -length(?) - 1) = '/' || ?)")
        params += [model, model, model]
    query = f"SELECT {_COLUMNS} FROM batch_items i JOIN batch_runs r ON r.id = i.run_id"
    if where:
        query += " WHERE " + " AND ".join(where)
    query += " ORDER BY coalesce(i.finished_at, 0) DESC, i.run_id DESC, i.row_key DESC LIMIT ?"
    conn = _connect(db)
    try:
        rows = conn.execute(query, (*params, limit)).fetchall()
    finally:
        conn.close()
    return [_shown(row) for row in reversed(rows)]


def _connect(db: Path) -> sqlite3.Connection:
    if not db.is_file():
        raise ConfigError([("--db", f"no run store at {db}", "run a batch first, or give --db")])
    try:
        return connect(db)
    except sqlite3.Error as exc:
        raise ConfigError([("--db", f"cannot read {db}: {exc}", "give a run store")]) from None


def _shown(row: tuple[Any, ...]) -> ShownItem:
    run_id, key, model, status, row_json, response, error, config = row
    return ShownItem(run_id, key, model, status, _prompt(row_json, config), response, error)


def _prompt(row_json: str, config_json: str) -> str | None:
    """The item's prompt rendered again from its row and the run's template."""
    try:
        row = json.loads(row_json)
        config = json.loads(config_json)
        if config.get("pipeline"):
            return cell_text(row.get("message"))
        return PromptTemplate(config.get("template")).render(row)
    except (ValueError, KeyError, KrytenLLMError):
        return None  # a row that could not be asked has no prompt
