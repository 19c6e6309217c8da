"""The one progress module of batch and explore: a tqdm bar on a terminal, plain lines in logs."""

from __future__ import annotations

import io
from typing import Any

from kryten_llm.batch.progress import Progress as BatchProgress
from kryten_llm.explore.progress import Progress as ExploreProgress
from kryten_llm.progress import StatusLine


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_are_paced_by_the_interval_and_carry_no_carriage_return() -> None:
    stream, clock = io.StringIO(), Clock()
    line = StatusLine(stream, label="batch progress", mode="lines", interval=5.0, clock=clock)
    assert line.due()
    line.show("1/10")
    clock.now += 4.9
    assert not line.due()
    clock.now += 0.2
    assert line.due()
    line.show("2/10")
    assert stream.getvalue() == "batch progress: 1/10\nbatch progress: 2/10\n"


def test_a_terminal_gets_a_bar_redrawn_in_place_and_ended_with_a_newline() -> None:
    stream = io.StringIO()
    line = StatusLine(stream, label="batch", mode="tty")
    line.show("5/10 12.0/s ETA 0:01", done=5, total=10)
    line.close("10/10 12.0/s ETA 0:00", done=10, total=10)
    text = stream.getvalue()
    assert "\r" in text
    assert " 50%|" in text
    assert "100%|" in text
    assert text.rstrip(" ").endswith("10/10 12.0/s ETA 0:00\n")


def test_off_draws_nothing() -> None:
    stream = io.StringIO()
    line = StatusLine(stream, label="x", mode="off")
    line.show("a", done=1, total=2)
    line.close("b")
    assert stream.getvalue() == ""
    assert not line.due()


def test_batch_progress_in_a_log_prints_counts_rate_and_eta() -> None:
    stream, clock = io.StringIO(), Clock()
    progress = BatchProgress(total=4, stream=stream, interval=1.0, clock=clock)
    clock.now += 1.0
    progress.advance(done=1, failed=1)
    progress.tick()
    progress.close()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "batch progress:  50% 2/4 (1 failed) 2.0/s ETA 0:01"
    assert all(line.startswith("batch progress: ") for line in lines)


def _snapshot() -> dict[str, Any]:
    return {
        "items": 12,
        "target": 100,
        "counts": {"received": 40, "exact_duplicates": 10, "near_duplicates": 4},
        "recent_yield": 0.25,
        "providers": {"openai": {"yield": 0.3}},
        "elapsed_seconds": 7.0,
    }


def test_explore_progress_keeps_its_plain_lines_and_draws_a_bar_on_a_terminal() -> None:
    plain = io.StringIO()
    ExploreProgress(_snapshot, plain, mode="lines").update()
    assert plain.getvalue().startswith("explore: 12/100 items · 40 lines · dup 35.0%")
    tty = io.StringIO()
    progress = ExploreProgress(_snapshot, tty, mode="tty")
    progress.update()
    progress.finish()
    assert " 12%|" in tty.getvalue()
    assert tty.getvalue().endswith("\n")
