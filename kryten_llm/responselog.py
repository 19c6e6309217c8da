"""The response log: one JSON line per triggered message, whatever became of it.

Operators read these files to answer "why did (or didn't) the bot say that?". Each line holds
the correlation id, times, channel, user, trigger, the input, the decision and its reason, the
parts sent, and the provider, model, latency and token usage of the LLM call. A new file starts
each UTC day (``responses-YYYY-MM-DD.jsonl``). Writes are line-buffered so a crash loses at most
the line being written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import structlog

Listener = Callable[[dict[str, Any]], None]
log = structlog.get_logger(__name__)


class ResponseLog:
    """Appends decision records to ``<directory>/responses-<day>.jsonl``."""

    def __init__(self, directory: Path, *, enabled: bool = True) -> None:
        self._directory = directory
        self._enabled = enabled
        self._day = ""
        self._file: IO[str] | None = None
        self._listeners: list[Listener] = []

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` with every record written (even when the file is disabled).

        Listeners run inline on the reply path and must be quick. One that raises is logged
        and skipped: a broken dashboard or terminal never stops the bot from replying.
        """
        self._listeners.append(listener)

    @property
    def path(self) -> Path | None:
        """The file written to now, if any."""
        return self._directory / f"responses-{self._day}.jsonl" if self._file else None

    def write(self, record: dict[str, Any]) -> None:
        """Append one record; adds ``logged_at`` (UTC ISO-8601)."""
        now = datetime.now(UTC)
        full = {"logged_at": now.isoformat(), **record}
        for listener in self._listeners:
            try:
                listener(full)
            except Exception:
                log.exception("response_listener_failed", listener=repr(listener))
        if not self._enabled:
            return
        day = now.strftime("%Y-%m-%d")
        if day != self._day or self._file is None:
            self._open(day)
        assert self._file is not None
        line = json.dumps(full, ensure_ascii=False)
        self._file.write(line + "\n")

    def _open(self, day: str) -> None:
        self.close()
        self._directory.mkdir(parents=True, exist_ok=True)
        self._day = day
        self._file = (self._directory / f"responses-{day}.jsonl").open(
            "a", encoding="utf-8", buffering=1
        )

    def close(self) -> None:
        """Flush and close the current file; writing again reopens it."""
        if self._file is not None:
            self._file.close()
            self._file = None
