"""Live progress of an exploration on stderr, drawn from :meth:`Explorer.snapshot`.

On a terminal a bar is redrawn in place a few times a second; otherwise (a pipe, a log file,
systemd) a plain ``explore: ...`` line is printed every few seconds, so logs stay readable. How
the line is shown is :class:`kryten_llm.progress.StatusLine`'s (shared with ``batch``); what it
says is :func:`render`'s. The reporter only reads snapshots: the same data a dashboard would
show.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TextIO

from kryten_llm.progress import Mode, StatusLine

__all__ = ["LINES_INTERVAL", "TTY_INTERVAL", "Mode", "Progress", "render"]

TTY_INTERVAL = 0.25
LINES_INTERVAL = 5.0


def render(snapshot: dict[str, Any]) -> str:
    """One progress line for a snapshot.

    Returns:
        e.g. ``"1,204 items/5,000 · 3,010 lines · dup 58.1% (exact 41.0%, near 17.1%) ·
        yield 0.12 · openai 0.40, local 0.31 · 12s"``.
    """
    counts = snapshot["counts"]
    received = counts["received"] or 0
    target = f"/{snapshot['target']:,}" if snapshot.get("target") else ""

    def pct(value: int) -> str:
        return f"{100 * value / received:.1f}%" if received else "-"

    parts = [
        f"{snapshot['items']:,}{target} items",
        f"{received:,} lines",
        f"dup {pct(counts['exact_duplicates'] + counts['near_duplicates'])} "
        f"(exact {pct(counts['exact_duplicates'])}, near {pct(counts['near_duplicates'])})",
    ]
    if snapshot.get("recent_yield") is not None:
        parts.append(f"yield {snapshot['recent_yield']:.2f}")
    per_provider = [
        f"{name} {p['yield']:.2f}"
        for name, p in snapshot.get("providers", {}).items()
        if p.get("yield") is not None
    ]
    if per_provider:
        parts.append(", ".join(per_provider))
    parts.append(f"{snapshot['elapsed_seconds']:.0f}s")
    return " · ".join(parts)


class Progress:
    """Prints progress until stopped.

    Args:
        snapshot: returns the explorer's current snapshot.
        stream: where to write (stderr).
        mode: ``tty`` redraws one line, ``lines`` prints plain lines, ``off`` nothing,
            ``auto`` picks ``tty`` when ``stream`` is a terminal.
        interval: seconds between updates; defaults by mode.
    """

    def __init__(
        self,
        snapshot: Callable[[], dict[str, Any]],
        stream: TextIO,
        *,
        mode: Mode = "auto",
        interval: float | None = None,
    ) -> None:
        self._snapshot = snapshot
        self._line = StatusLine(stream, label="explore", mode=mode)
        self.mode = self._line.mode
        self._interval = interval or (TTY_INTERVAL if self.mode == "tty" else LINES_INTERVAL)

    async def run(self) -> None:
        """Update until cancelled."""
        if self.mode == "off":
            return
        while True:
            await asyncio.sleep(self._interval)
            self.update()

    def update(self) -> None:
        """Print the current state once."""
        snapshot = self._snapshot()
        self._line.show(render(snapshot), done=snapshot["items"], total=snapshot.get("target"))

    def finish(self) -> None:
        """Print the final state and end the redrawn line."""
        if self.mode == "off":
            return
        snapshot = self._snapshot()
        self._line.close(render(snapshot), done=snapshot["items"], total=snapshot.get("target"))
