"""What a person watching a batch sees: a progress bar, then a summary per model.

The counts (answered, failed, already answered), the rate over the last half minute and the
ETA are batch's own; how the line is shown (a tqdm bar redrawn in place on a terminal, a plain
``batch progress: ...`` line every ``interval`` seconds otherwise, never stdout) is
:class:`kryten_llm.progress.StatusLine`'s, shared with ``explore``.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TextIO

from kryten_llm.batch.storetypes import ModelSummary
from kryten_llm.console import table
from kryten_llm.progress import StatusLine, duration

__all__ = ["Progress", "duration", "summary_lines"]

_REDRAW = 0.1
_RATE_WINDOW = 30.0


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
        self._clock = clock
        self._line = StatusLine(
            stream or sys.stderr,
            label="batch progress",
            mode="auto" if enabled else "off",
            interval=interval,
            redraw=_REDRAW,
            clock=clock,
        )
        self._tty = self._line.mode == "tty"
        self._samples: deque[tuple[float, int]] = deque([(clock(), 0)])

    @property
    def finished(self) -> int:
        """Items finished: answered, failed or found already answered."""
        return self.done + self.failed + self.skipped

    def set_total(self, total: int | None) -> None:
        """Record how many items the run has, once counted."""
        self.total = total

    def advance(self, done: int = 0, failed: int = 0, skipped: int = 0) -> None:
        """Count finished items; redraws the bar when it is due."""
        self.done += done
        self.failed += failed
        self.skipped += skipped
        if self._tty and self._line.due():
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

    def eta(self, rate: float) -> float | None:
        """Seconds left at ``rate`` (items per second), or None when unknown."""
        if self.total is None:
            return None
        left = max(self.total - self.finished, 0)
        if left == 0:
            return 0.0
        return left / rate if rate > 0 else None

    def line(self) -> str:
        """The progress as one line of text (without the bar)."""
        rate = self.rate()
        counts = f"{self.finished}/{self.total}" if self.total is not None else f"{self.finished}"
        extra = []
        if self.failed:
            extra.append(f"{self.failed} failed")
        if self.skipped:
            extra.append(f"{self.skipped} already answered")
        detail = f" ({', '.join(extra)})" if extra else ""
        percent = ""
        if self.total and not self._tty:  # the bar shows it on a terminal
            percent = f"{min(self.finished / self.total, 1.0) * 100:3.0f}% "
        return f"{percent}{counts}{detail} {rate:.1f}/s ETA {duration(self.eta(rate))}"

    def draw(self) -> None:
        """Redraw in place (terminal) or print one line (anything else)."""
        self._line.show(self.line(), done=self.finished, total=self.total)

    def tick(self) -> None:
        """Called a few times a second: prints the periodic plain line when due."""
        if not self._tty and self._line.due():
            self.draw()

    def close(self) -> None:
        """Draw the final state and end the line."""
        self._line.close(self.line(), done=self.finished, total=self.total)


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
    lines = table(rows)
    if elapsed is not None:
        lines.append(f"elapsed {duration(elapsed)}")
    return lines
