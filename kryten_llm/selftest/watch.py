"""Reading what the bot wrote, as it writes it: the response log and its JSON diagnostic log.

The bot runs as a separate process, so the self-test learns what it decided the way an
operator would: from the response log (one JSON line per decision, ``responses-<day>.jsonl``)
and from its JSON log lines on stderr (every line a worker logs carries the message's
``correlation_id``). :class:`JsonLines` follows a set of files and keeps the records by
correlation id; a line still being written is left for the next read.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from kryten_llm.errors import SelftestError

POLL_SECONDS = 0.02
T = TypeVar("T")


class JsonLines:
    """JSON-lines files matching ``pattern`` in ``folder``, read incrementally."""

    def __init__(self, folder: Path, pattern: str) -> None:
        self._folder = folder
        self._pattern = pattern
        self._offsets: dict[Path, int] = {}
        self.by_correlation: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        self.by_event: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)

    def read(self) -> None:
        """Take in every complete line written since the last read."""
        for path in sorted(self._folder.glob(self._pattern)):
            offset = self._offsets.get(path, 0)
            try:
                with path.open("rb") as file:
                    file.seek(offset)
                    data = file.read()
            except OSError:
                continue
            end = data.rfind(b"\n") + 1  # a torn last line waits for its newline
            self._offsets[path] = offset + end
            for raw in data[:end].splitlines():
                try:
                    record = json.loads(raw)
                except ValueError:
                    continue  # not JSON: a plain-text line (a config error, a traceback)
                if not isinstance(record, dict):
                    continue
                if isinstance(record.get("correlation_id"), str):
                    self.by_correlation[record["correlation_id"]].append(record)
                if isinstance(record.get("event"), str):
                    self.by_event[record["event"]].append(record)

    def about(self, correlation_id: str) -> list[dict[str, Any]]:
        """The records about one message read so far."""
        self.read()
        return list(self.by_correlation.get(correlation_id, ()))

    def named(self, event: str) -> list[dict[str, Any]]:
        """The records of one event (``config_changed``) read so far."""
        self.read()
        return list(self.by_event.get(event, ()))

    async def first(self, correlation_id: str, within: float, what: str) -> dict[str, Any]:
        """The first record about ``correlation_id``, waiting up to ``within`` seconds.

        Raises:
            SelftestError: none arrived in time (the message names ``what`` was awaited).
        """
        records = await wait_for(
            lambda: self.about(correlation_id),
            within,
            f"no {what} about {short(correlation_id)}",
        )
        return records[0]


async def wait_for(probe: Callable[[], T | None], within: float, missing: str) -> T:
    """``probe()``'s first truthy value, asked every few milliseconds for ``within`` seconds.

    Raises:
        SelftestError: ``missing`` and the time waited, when nothing came.
    """
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise SelftestError(f"{missing} within {within:g} s")
        await asyncio.sleep(POLL_SECONDS)


def short(identifier: str) -> str:
    """The first eight characters of a UUID: enough to find it in the logs."""
    return identifier[:8]


def tail(path: Path, lines: int = 3) -> str:
    """The last ``lines`` non-empty lines of a text file, joined with `` | `` (for errors)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(kept[-lines:])
