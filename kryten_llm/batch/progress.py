"""What a person watching a batch sees: a progress bar, then a summary per model.

On a terminal the bar is redrawn in place on stderr (at most ten times a second) with the
count, the rate over the last half minute and the ETA; when stderr is not a terminal (a log
file, CI) a plain line is printed every ``interval`` seconds instead. Output never goes to
stdout, which stays free for results (``batch status --json``).
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TextIO

from kryten_llm.batch.store import ModelSummary

_REDRAW = 0.1
_RATE_WINDOW = 30.0
_BAR = 24


def duration(seconds: float | None) -> str:
    """``1:02:03`` / ``2:03`` style, or ``?`` when unknown."""
    if seconds is None:
        return "?"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Counts finished items and shows it.

    Args:
        total: items expected (None until known; see :meth:`set_total`).
        stream: where to draw (stderr).
        enabled: draw at all (the Python API runs silently by default).
        interval: seconds between plain lines when ``stream`` is not a terminal.
        clock: monotonic time source.
    """

    def __init__(
        self,
        total: int | None = None,
        *,
        stream: TextIO | None = None,
        enabled: bool = True,
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.done = 0
        self.failed = 0
        self.skipped = 0
        self._stream = stream or sys.stderr
        self._enabled = enabled
        self._tty = enabled and self._stream.isatty()
        self._interval = interval
        self._clock = clock
        self._started = clock()
        self._last_draw = 0.0
        self._samples: deque[tuple[float, int]] = deque([(self._started, 0)])

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.skipped

    def set_total(self, total: int | None) -> None:
        self.total = total

    def advance(self, done: int = 0, failed: int = 0, skipped: int = 0) -> None:
        """Count finished items; redraws the bar when it is due."""
        self.done += done
        self.failed += failed
        self.skipped += skipped
        if self._tty and self._clock() - self._last_draw >= _REDRAW:
            self.draw()

    def rate(self) -> float:
        """Items per second over the recent window (answered and failed, not skipped)."""
        now = self._clock()
        worked = self.done + self.failed
        self._samples.append((now, worked))
        while len(self._samples) > 2 and now - self._samples[1][0] >= _RATE_WINDOW:
            self._samples.popleft()
        first_time, first_count = self._samples[0]
        elapsed = now - first_time
        return (worked - first_count) / elapsed if elapsed > 0 else 0.0

    def eta(self) -> float | None:
        """Seconds left at the current rate, or None when unknown."""
        if self.total is None:
            return None
        rate = self.rate()
        left = max(self.total - self.finished, 0)
        if left == 0:
            return 0.0
        return left / rate if rate > 0 else None

    def line(self) -> str:
        """The progress as one line of text."""
        rate = self.rate()
        counts = f"{self.finished}/{self.total}" if self.total is not None else f"{self.finished}"
        extra = []
        if self.failed:
            extra.append(f"{self.failed} failed")
        if self.skipped:
            extra.append(f"{self.skipped} already answered")
        detail = f" ({', '.join(extra)})" if extra else ""
        bar = ""
        if self.total:
            share = min(self.finished / self.total, 1.0)
            filled = int(share * _BAR)
            bar = f"[{'#' * filled}{'.' * (_BAR - filled)}] {share * 100:3.0f}% "
        return f"{bar}{counts}{detail} {rate:.1f}/s ETA {duration(self.eta())}"

    def draw(self) -> None:
        """Redraw in place (terminal) or print one line (anything else)."""
        if not self._enabled:
            return
        self._last_draw = self._clock()
        if self._tty:
            self._stream.write("\r\x1b[2K" + self.line())
        else:
            self._stream.write("batch progress: " + self.line() + "\n")
        self._stream.flush()

    def tick(self) -> None:
        """Called about every half second: prints the periodic plain line when due."""
        if self._enabled and not self._tty and self._clock() - self._last_draw >= self._interval:
            self.draw()

    def close(self) -> None:
        """Draw the final state and end the line."""
        if not self._enabled:
            return
        self.draw()
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()


def summary_lines(summaries: Sequence[ModelSummary], *, elapsed: float | None = None) -> list[str]:
    """A table of the per-model figures: requests, successes, failures, latency, tokens, cost."""
    header = ("model", "requests", "ok", "failed", "mean ms", "p95 ms", "tokens", "cost USD")
    rows = [header]
    for s in summaries:
        rows.append(
            (
                s.model,
                str(s.requests),
                str(s.successes) + (f" ({s.cached} cached)" if s.cached else ""),
                str(s.failures),
                "-" if s.mean_latency_ms is None else f"{s.mean_latency_ms:.1f}",
                "-" if s.p95_latency_ms is None else f"{s.p95_latency_ms:.1f}",
                str(s.prompt_tokens + s.completion_tokens),
                "-" if s.cost_usd is None else f"{s.cost_usd:.4f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    if elapsed is not None:
        lines.append(f"elapsed {duration(elapsed)}")
    return lines
