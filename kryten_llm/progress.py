"""Progress of a long command on stderr, the same way for ``batch`` and ``explore``.

On a terminal a :mod:`tqdm` bar is redrawn in place (at most every ``redraw`` seconds, cut to
the terminal's width); anywhere else (a pipe, a log file, systemd, CI) a plain line
``<label>: <text>`` is printed every ``interval`` seconds, so logs stay readable and carry no
carriage returns. Nothing is ever written to stdout, which stays free for results
(``batch status --json``). Each command decides *what* the line says
(:mod:`kryten_llm.batch.progress`, :mod:`kryten_llm.explore.progress`); this module decides
*how* and *when* it is shown.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal, TextIO

from tqdm import tqdm

Mode = Literal["auto", "tty", "lines", "off"]


def duration(seconds: float | None) -> str:
    """``1:02:03`` / ``2:03`` style, or ``?`` when unknown."""
    if seconds is None:
        return "?"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def resolve_mode(mode: Mode, stream: TextIO) -> Mode:
    """``auto`` becomes ``tty`` when ``stream`` is a terminal, ``lines`` otherwise."""
    if mode != "auto":
        return mode
    return "tty" if stream.isatty() else "lines"


class StatusLine:
    """One line of progress, shown as the stream allows.

    Args:
        stream: where to draw (stderr).
        label: the line's prefix (``batch``, ``explore``), also the bar's description.
        mode: ``tty`` (a redrawn tqdm bar), ``lines`` (plain lines), ``off``, or ``auto``.
        interval: seconds between plain lines.
        redraw: seconds between redraws of the bar.
        clock: monotonic time source.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        label: str,
        mode: Mode = "auto",
        interval: float = 5.0,
        redraw: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.mode = resolve_mode(mode, stream)
        self.label = label
        self._stream = stream
        self._interval = interval
        self._redraw = redraw
        self._clock = clock
        self._last: float | None = None
        self._bar: _Bar | None = None

    def due(self) -> bool:
        """Whether :meth:`show` would be shown now by the mode's pace (off: never)."""
        if self.mode == "off":
            return False
        if self._last is None:
            return True
        pace = self._redraw if self.mode == "tty" else self._interval
        return self._clock() - self._last >= pace

    def show(self, text: str, *, done: int | None = None, total: int | None = None) -> None:
        """Draw ``text`` now: redraw the bar (``done`` of ``total``) or print one line."""
        if self.mode == "off":
            return
        self._last = self._clock()
        if self.mode == "lines":
            self._stream.write(f"{self.label}: {text}\n")
            self._stream.flush()
            return
        bar = self._tqdm()
        bar.total = total
        bar.n = done or 0
        literal = text.replace("{", "{{").replace("}", "}}")
        if total and done is not None:
            bar.bar_format = f"{self.label} {{percentage:3.0f}}%|{{bar}}| {literal}"
        else:
            bar.bar_format = f"{self.label}: {literal}"
        bar.refresh()

    def close(self, text: str, *, done: int | None = None, total: int | None = None) -> None:
        """Draw the final state and end the line (idempotent for the bar)."""
        if self.mode == "off":
            return
        self.show(text, done=done, total=total)
        if self._bar is not None:
            self._bar.close()  # leaves the last state on screen and ends the line
            self._bar = None

    def _tqdm(self) -> _Bar:
        if self._bar is None:
            self._bar = _Bar(
                file=self._stream, dynamic_ncols=True, leave=True, bar_format=self.label
            )
        return self._bar


class _Bar(tqdm):  # type: ignore[type-arg]
    """A tqdm bar drawn only when :class:`StatusLine` says so: no monitor thread."""

    monitor_interval = 0
