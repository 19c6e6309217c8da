"""The batch CLI as real processes: list, status, cancel across processes, cost estimate."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.batch_helpers import cli, read_output, start_cli, write_config
from tests.conftest import eventually
from tests.openai_server import ScriptedOpenAIServer, drip, hang, reply

HANG_BOUND = 120.0  # seconds: only a hang reaches it
SLOW = {
    "providers": {"slow": {"type": "scripted", "model": "echo", "latency_ms": 100}},
    "default_provider": "slow",
}


async def _wait_status(
    tmp: Path, run_id: str, wanted: str, runner: asyncio.subprocess.Process
) -> dict[str, Any]:
    """Poll ``batch status --json`` (another process) until the run is in ``wanted``.

    Waits as long as the run's process lives (a slow machine only makes it slower); the
    process ending first is the failure. The outer bound only keeps a hang from lasting
    forever.
    """
    deadline = asyncio.get_running_loop().time() + HANG_BOUND
    while True:
        result = await cli("status", run_id, "--json", cwd=tmp)
        if result.code == 0:
            data: dict[str, Any] = json.loads(result.stdout)
            if data["status"] == wanted and (wanted != "running" or data["completed_prompts"]):
                return data
        if runner.returncode is not None:
            raise AssertionError(f"batch {run_id} ended before {wanted}: {result}")
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"batch {run_id} never reached {wanted}: {result}")
        await asyncio.sleep(0.2)


async def test_list_status_and_cancel_a_run_in_another_process(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("".join(f"line {i}\n" for i in range(400)))
    config = write_config(tmp_path, **SLOW)
    runner = await start_cli(
        "in.txt",
        "--config",
        str(config),
        "--concurrency",
        "2",
        "--batch-id",
        "job1",
        "-o",
        "out.jsonl",
        cwd=tmp_path,
    )
    try:
        running = await _wait_status(tmp_path, "job1", "running", runner)
        assert running["total_prompts"] == 400
        assert running["completed_prompts"] < 400
        listed = await cli("list", "--status", "running", cwd=tmp_path)
        assert "job1" in listed.stdout
        cancel = await cli("cancel", "job1", "--wait", cwd=tmp_path)
        assert cancel.code == 0, cancel.stderr
        code = await asyncio.wait_for(runner.wait(), 15)
    finally:
        if runner.returncode is None:
            runner.kill()
            await runner.wait()
    assert code == 130
    status = json.loads((await cli("status", "job1", "--json", cwd=tmp_path)).stdout)
    assert status["status"] == "cancelled"
    done = status["completed_prompts"]
    assert 0 < done < 400
    records = read_output(tmp_path / "out.jsonl")
    assert len(records) == done  # the output holds what was answered, once each
    human = await cli("status", "job1", cwd=tmp_path)
    assert "completed:" in human.stdout
    assert "ETA:" in human.stdout

    resumed = await cli("--resume", "--batch-id", "job1", "--concurrency", "16", cwd=tmp_path)
    assert resumed.code == 0, resumed.stderr
    records = read_output(tmp_path / "out.jsonl")
    assert sorted(r["row"] for r in records) == list(range(400))
    assert all(r["response"] == f"You said: line {r['row']}" for r in records)
    final = json.loads((await cli("status", "job1", "--json", cwd=tmp_path)).stdout)
    assert (final["status"], final["completed_prompts"], final["failed_prompts"]) == (
        "completed",
        400,
        0,
    )


async def test_sigint_pauses_a_run_and_it_resumes(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("".join(f"l{i}\n" for i in range(300)))
    config = write_config(tmp_path, **SLOW)
    runner = await start_cli(
        "in.txt", "--config", str(config), "--batch-id", "p", "-o", "o.csv", cwd=tmp_path
    )
    await _wait_status(tmp_path, "p", "running", runner)
    runner.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(runner.wait(), 15) == 130
    paused = await cli("list", "--status", "paused", "--json", cwd=tmp_path)
    assert [r["id"] for r in json.loads(paused.stdout)] == ["p"]
    result = await cli("--resume", "--batch-id", "p", "--concurrency", "32", cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert sorted(int(r["row"]) for r in read_output(tmp_path / "o.csv")) == list(range(300))


async def _answered(db: Path, run_id: str, at_least: int, timeout: float = 15.0) -> None:
    """Wait until ``at_least`` items of the run are stored (read straight from the store)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        with contextlib.closing(sqlite3.connect(db, timeout=5)) as conn:
            try:
                row = conn.execute(
                    "SELECT count(*) FROM batch_items WHERE run_id = ?", (run_id,)
                ).fetchone()
            except sqlite3.OperationalError:
                row = (0,)  # no schema yet
        if row[0] >= at_least:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"batch {run_id} never stored {at_least} items")


async def test_sigterm_while_requests_outlast_the_stop_grace_still_exits_paused(
    tmp_path: Path,
) -> None:
    """Requests that hang past the grace are abandoned: the process exits, the run is paused
    and resumable, and the output holds what was answered (the producer, blocked on a full
    queue, used to wait forever for workers that had been cancelled)."""
    (tmp_path / "in.txt").write_text("".join(f"l{i}\n" for i in range(50)))
    async with ScriptedOpenAIServer(reply("a"), reply("b"), default=hang(60)) as llm:
        runner = await start_cli(
            "in.txt",
            "--provider",
            f"openai:{llm.base_url}",
            "--config",
            str(write_config(tmp_path)),
            "--concurrency",
            "2",
            "--timeout",
            "120",
            "--stop-grace",
            "0.2",
            "--batch-id",
            "t",
            "-o",
            "out.jsonl",
            cwd=tmp_path,
        )
        try:
            await _answered(tmp_path / "batch.db", "t", 2)
            # Both workers hang on rows 2 and 3; the queue is full behind them.
            await eventually(lambda: len(llm.completions) >= 4, 15)
            runner.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(runner.wait(), 20)
        finally:
            if runner.returncode is None:
                runner.kill()
                await runner.wait()
    assert code == 130
    with contextlib.closing(sqlite3.connect(tmp_path / "batch.db")) as conn:
        assert conn.execute("SELECT status FROM batch_runs WHERE id = 't'").fetchone() == (
            "paused",
        )
    assert sorted(r["response"] for r in read_output(tmp_path / "out.jsonl")) == ["a", "b"]


async def test_existing_batch_id_without_resume_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("a\n")
    config = str(write_config(tmp_path))
    assert (await cli("in.txt", "--config", config, "--batch-id", "x", cwd=tmp_path)).code == 0
    again = await cli("in.txt", "--config", config, "--batch-id", "x", cwd=tmp_path)
    assert again.code == 2
    assert "--resume" in again.stderr


async def test_failed_rows_give_exit_code_1(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("a\nb\n")
    from tests.openai_server import status

    async with ScriptedOpenAIServer(default=status(401)) as llm:
        result = await cli(
            "in.txt",
            "--provider",
            f"openai:{llm.base_url}",
            "--config",
            str(write_config(tmp_path)),
            cwd=tmp_path,
        )
    assert result.code == 1
    assert "2 failed" in result.stderr


async def test_unknown_provider_is_a_usage_error_listing_the_known_ones(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("a\n")
    result = await cli("in.txt", "--provider", "nope", cwd=tmp_path)
    assert result.code == 2
    assert "echo" in result.stderr


@pytest.mark.parametrize("answer", ["n\n", ""], ids=["no", "eof"])
async def test_estimate_cost_asks_and_sends_nothing_when_refused(
    tmp_path: Path, answer: str
) -> None:
    (tmp_path / "in.txt").write_text("x" * 400 + "\n" + "y" * 400 + "\n")
    llm_section = {
        "providers": {
            "paid": {
                "type": "openai",
                "base_url": "http://127.0.0.1:9/v1",
                "model": "m",
                "max_tokens": 100,
                "price_input_per_million": 1000.0,
                "price_output_per_million": 2000.0,
            }
        },
        "default_provider": "paid",
    }
    config = str(write_config(tmp_path, **llm_section))
    result = await cli("in.txt", "--config", config, "--estimate-cost", cwd=tmp_path, stdin=answer)
    assert result.code == 0
    assert "not started" in result.stderr
    # 2 rows of ~100 tokens (+8 framing) = 216 input tokens at $1000/M = $0.216;
    # at most 200 output tokens at $2000/M = $0.4 more.
    assert "~216 input tokens" in result.stderr
    assert "$0.2160 .. $0.6160" in result.stderr
    assert "start the batch?" in result.stderr


async def test_estimate_cost_with_yes_runs(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("a\nb\n")
    async with ScriptedOpenAIServer() as llm:
        result = await cli(
            "in.txt",
            "--provider",
            f"openai:{llm.base_url}",
            "--estimate-cost",
            "--yes",
            "--rate-limit",
            "60",
            "--rate-window",
            "0.5",
            "--config",
            str(write_config(tmp_path)),
            cwd=tmp_path,
        )
        assert len(llm.completions) == 2
    assert result.code == 0, result.stderr
    assert "estimate for 2 rows" in result.stderr
    assert "by the rate limit" in result.stderr


async def test_progress_and_summary_on_a_non_terminal(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("".join(f"{i}\n" for i in range(20)))
    async with ScriptedOpenAIServer(default=drip(chunks=2, interval=0.05)) as llm:
        result = await cli(
            "in.txt",
            "--provider",
            f"openai:{llm.base_url}",
            "--progress-interval",
            "0.2",
            "--concurrency",
            "2",
            "--config",
            str(write_config(tmp_path)),
            cwd=tmp_path,
        )
    assert result.code == 0
    assert "batch progress:" in result.stderr
    assert "/s ETA" in result.stderr
    summary = result.stderr.splitlines()
    header = next(line for line in summary if line.startswith("model"))
    for column in ("requests", "ok", "failed", "mean ms", "p95 ms", "tokens", "cost USD"):
        assert column in header
    assert "\r" not in result.stderr  # no terminal redraws in a log
