"""The batch item log: one JSON line per answered or failed item, beside the bot's own log.

Batch answers are decisions made on the bot's behalf as much as chat replies are, so, like
the response log, every item is one line in ``logging.response_log_dir``
(``batch-<id>.jsonl``): the prompt, the answer or error, the model, tokens and latency.
``--no-log`` turns it off (the run store keeps the results either way). Line-buffered, so a
crash loses at most the line being written. The directory is created and the file opened
before the run starts (:meth:`ItemLog.open`), so a log that cannot be written is a
:class:`~kryten_llm.errors.ConfigError` at startup, not a failure in the middle of the run.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from kryten_llm.errors import ConfigError


class ItemLog:
    """Appends item records to ``<directory>/batch-<run id>.jsonl``.

    Args:
        directory: the response log directory.
        run_id: the batch's id (names the file).
        enabled: write at all.
    """

    def __init__(self, directory: Path, run_id: str, *, enabled: bool = True) -> None:
        self.path = directory / f"batch-{run_id}.jsonl"
        self._enabled = enabled
        self._file: IO[str] | None = None

    def open(self) -> None:
        """Create the directory and open the file (idempotent; nothing when disabled).

        Raises:
            ConfigError: the directory cannot be created or the file cannot be written.
        """
        if not self._enabled or self._file is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8", buffering=1)
        except OSError as exc:
            raise ConfigError(
                [
                    (
                        "logging.response_log_dir",
                        f"cannot write the item log {self.path} ({exc.strerror or exc})",
                        "make the directory writable, set logging.response_log_dir elsewhere, "
                        "or give the no_log option",
                    )
                ]
            ) from None

    def write(self, record: dict[str, Any]) -> None:
        """Append one record, stamped with ``logged_at`` (UTC ISO-8601)."""
        if not self._enabled:
            return
        if self._file is None:
            self.open()
        assert self._file is not None
        full = {"logged_at": datetime.now(UTC).isoformat(), **record}
        self._file.write(json.dumps(full, ensure_ascii=False, default=str) + "\n")

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None
