"""The response log: one JSON line per triggered message, whatever became of it.

Operators read these files to answer "why did (or didn't) the bot say that?". Each line holds
the correlation id, times, channel, user, trigger, the input, the decision and its reason, the
parts sent, and the provider, model, latency and token usage of the LLM call. A new file starts
each UTC day (``responses-YYYY-MM-DD.jsonl``). Writes are line-buffered so a crash loses at most
the line being written. Each line is an :class:`~kryten_llm.pipeline.outcome.Outcome`; listeners
(telemetry, the demo's transcript) get the same value.

Writing never fails a reply: text that cannot be encoded (a lone surrogate from the wire) is
written as a JSON escape, and a file that cannot be written (disk full) is logged and skipped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import structlog

from kryten_llm.pipeline.outcome import Outcome

Listener = Callable[[Outcome], None]
Annotator = Callable[[Outcome], Outcome]
log = structlog.get_logger(__name__)


class ResponseLog:
    """Appends decision records to ``<directory>/responses-<day>.jsonl``."""

    def __init__(self, directory: Path, *, enabled: bool = True) -> None:
        self._directory = directory
        self._enabled = enabled
        self._day = ""
        self._file: IO[str] | None = None
        self._closed = False  # by close(): a late line is appended with a file of its own
        self._listeners: list[Listener] = []
        self._annotators: list[Annotator] = []

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` with every record written (even when the file is disabled).

        Listeners run inline on the reply path and must be quick. One that raises is logged
        and skipped: a broken dashboard or terminal never stops the bot from replying.
        """
        self._listeners.append(listener)

    def add_annotator(self, annotator: Annotator) -> None:
        """Pass every record through ``annotator`` before listeners see it and it is written.

        The conversation learns here what was said (parts sent, to whom) and stamps the
        channel's chat share on the line. Like listeners, annotators run inline and must be
        quick; one that raises is logged and skipped.
        """
        self._annotators.append(annotator)

    @property
    def path(self) -> Path | None:
        """The file written to now, if any."""
        return self._directory / f"responses-{self._day}.jsonl" if self._file else None

    def write(self, outcome: Outcome) -> Outcome:
        """Append one line; stamps ``logged_at`` (UTC ISO-8601) and returns the stamped value."""
        now = datetime.now(UTC)
        outcome = replace(outcome, logged_at=now.isoformat())
        for annotator in self._annotators:
            try:
                outcome = annotator(outcome)
            except Exception:
                log.exception("response_annotator_failed", annotator=repr(annotator))
        for listener in self._listeners:
            try:
                listener(outcome)
            except Exception:
                log.exception("response_listener_failed", listener=repr(listener))
        if self._enabled:
            try:
                self._append(
                    now.strftime("%Y-%m-%d"), json.dumps(outcome.to_json(), ensure_ascii=False)
                )
            except OSError as exc:
                log.error(
                    "response_log_write_failed", error=str(exc), directory=str(self._directory)
                )
        return outcome

    def _append(self, day: str, line: str) -> None:
        if self._closed:  # a line after close (a claim answered late at shutdown): kept,
            with self._open(day) as late:  # and nothing left open
                late.write(line + "\n")
            return
        if day != self._day or self._file is None:
            self._close_file()
            self._day = day
            self._file = self._open(day)
        self._file.write(line + "\n")

    def _open(self, day: str) -> IO[str]:
        self._directory.mkdir(parents=True, exist_ok=True)
        # backslashreplace: a lone surrogate becomes the JSON escape it stands for
        return (self._directory / f"responses-{day}.jsonl").open(
            "a", encoding="utf-8", errors="backslashreplace", buffering=1
        )

    def close(self) -> None:
        """Flush and close the file; a line written afterwards is appended and closed at once."""
        self._closed = True
        self._close_file()

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
