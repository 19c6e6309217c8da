"""What every command line of kryten-llm shares: exit codes, stop signals and plain tables.

The bot, ``batch``, ``explore`` and ``demo`` all end with one of these exit codes, stop on the
same signals, and print aligned text tables the same way; keeping them here means a new command
cannot drift from the others.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager

EXIT_OK = 0
EXIT_FAILED = 1  # the work ran and failed (a provider check, a failed batch)
EXIT_USAGE = 2  # bad configuration or arguments: nothing was started
EXIT_RESTART = 75  # EX_TEMPFAIL: asked to restart; llm.service restarts on it
EXIT_INTERRUPTED = 130  # stopped by SIGINT/SIGTERM (128 + SIGINT), resumable where it applies

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def on_stop_signals(
    handler: Callable[[signal.Signals], object],
    *,
    signals: Sequence[signal.Signals] = STOP_SIGNALS,
) -> Iterator[None]:
    """Call ``handler(signal)`` on the running loop for each of ``signals`` while inside.

    The handlers are removed on the way out, so a second Ctrl+C after the block ends reaches
    Python's default handler again.
    """
    loop = asyncio.get_running_loop()
    for sig in signals:
        loop.add_signal_handler(sig, handler, sig)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def table(
    rows: Sequence[Sequence[str]], *, last_free: bool = False, right: Collection[int] = ()
) -> list[str]:
    """Rows as lines of aligned columns two spaces apart, trailing blanks trimmed.

    Args:
        rows: the header (if any) first, then the data; every row equally long.
        last_free: leave the last column unpadded and out of the width sums (free text).
        right: the indexes of columns aligned right (numbers); the others align left.
    """
    if not rows:
        return []
    aligned = len(rows[0]) - 1 if last_free else len(rows[0])
    widths = [max(len(row[i]) for row in rows) for i in range(aligned)]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=False))
        ]
        cells.extend(row[aligned:])
        lines.append("  ".join(cells).rstrip())
    return lines
