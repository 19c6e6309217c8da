"""Batch rate limits: no window of the server's arrival times holds more than the limit."""

from __future__ import annotations

import itertools
from pathlib import Path

from kryten_llm.batch import run_batch
from kryten_llm.batch.ratelimit import RequestPacer
from tests.batch_helpers import batch_settings, cli, write_config
from tests.openai_server import ScriptedOpenAIServer


def most_in_window(times: list[float], window: float) -> int:
    """The largest number of times inside any half-open window of ``window`` seconds."""
    times = sorted(times)
    best = 0
    for i, start in enumerate(times):
        best = max(best, sum(1 for t in times[i:] if t < start + window))
    return best


async def test_pacer_spaces_requests_with_a_fake_clock() -> None:
    """20 per 60 s means one start every 3 s (plus the jitter margin), never sooner."""
    now = [0.0]
    starts: list[float] = []

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    pacer = RequestPacer(20, 60.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(50):
        await pacer.acquire()
        starts.append(now[0])
    assert most_in_window(starts, 60.0) <= 20
    assert min(b - a for a, b in itertools.pairwise(starts)) >= 3.0


async def test_shared_limit_holds_at_the_server_with_many_workers(tmp_path: Path) -> None:
    """'20 per minute' at test scale (a 1 s window), 16 workers: at most 20 in any second."""
    async with ScriptedOpenAIServer() as llm:
        result = await run_batch(
            [f"q{i}" for i in range(45)],
            providers=[f"openai:{llm.base_url}"],
            concurrency=16,
            rate_limit=20,
            rate_window=1.0,
            db=str(tmp_path / "b.db"),
            settings=batch_settings(tmp_path),
            no_log=True,
        )
        times = [r.received_at for r in llm.completions]
    assert result.completed == 45
    assert len(times) == 45
    assert most_in_window(times, 1.0) <= 20


async def test_retries_are_paced_too(tmp_path: Path) -> None:
    """A 500 retried by the manager still waits for the rate limit."""
    from tests.openai_server import status

    async with ScriptedOpenAIServer(status(500), status(500), status(500)) as llm:
        await run_batch(
            [f"q{i}" for i in range(6)],
            providers=[f"openai:{llm.base_url}"],
            concurrency=6,
            rate_limit=5,
            rate_window=0.5,
            db=str(tmp_path / "b.db"),
            settings=batch_settings(tmp_path, circuit={"failure_threshold": 10}),
            no_log=True,
        )
        times = [r.received_at for r in llm.completions]
    assert len(times) >= 9  # 6 rows + 3 retries
    assert most_in_window(times, 0.5) <= 5


async def test_cli_rate_limit_spaces_requests(tmp_path: Path) -> None:
    """``--rate-limit 600`` (per minute) starts requests at least 0.1 s apart."""
    (tmp_path / "in.txt").write_text("".join(f"question {i}\n" for i in range(6)))
    async with ScriptedOpenAIServer() as llm:
        result = await cli(
            "in.txt",
            "--provider",
            f"openai:{llm.base_url}",
            "--rate-limit",
            "600",
            "--concurrency",
            "6",
            "--config",
            str(write_config(tmp_path)),
            cwd=tmp_path,
        )
        times = sorted(r.received_at for r in llm.completions)
    assert result.code == 0, result.stderr
    assert len(times) == 6
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # 0.1 s less a few ms of network jitter between the two processes.
    assert min(gaps) >= 0.095, gaps
