"""The batch fixes of issue 16: outputs through links and pipes, one writer per output,
interrupted runs, rows lacking a template column, the key hint, the schema message."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest

from kryten_llm.batch import BatchResult, run_batch
from kryten_llm.batch.store import RunStore
from kryten_llm.errors import ConfigError
from kryten_llm.files import atomic_open, exclusive_lock
from tests.batch_helpers import SlowEchoServer, batch_settings, cli, read_output, start_cli
from tests.openai_server import ScriptedOpenAIServer, reply, status


def prompts(tmp: Path, count: int = 3) -> Path:
    path = tmp / "in.txt"
    path.write_text("".join(f"line {i}\n" for i in range(count)))
    return path


def test_a_link_is_written_through_and_stays_a_link(tmp_path: Path) -> None:
    target = tmp_path / "real.jsonl"
    target.write_text("old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    with atomic_open(link) as file:
        file.write("new\n")
    assert link.is_symlink()
    assert target.read_text() == "new\n"


async def test_a_fifo_output_is_written_in_place_not_replaced(tmp_path: Path) -> None:
    prompts(tmp_path)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    loop = asyncio.get_running_loop()
    reader = loop.run_in_executor(None, fifo.read_text)  # blocks until the writer is done
    result = await cli("in.txt", "--provider", "scripted:echo", "-o", str(fifo), "--format",
                       "jsonl", cwd=tmp_path)  # fmt: skip
    text = await asyncio.wait_for(reader, 20)
    assert result.code == 0, result.stderr
    assert [json.loads(line)["response"] for line in text.splitlines()] == [
        f"You said: line {i}" for i in range(3)
    ]
    assert fifo.is_fifo()


async def test_output_dash_streams_the_records_to_stdout(tmp_path: Path) -> None:
    prompts(tmp_path)
    result = await cli("in.txt", "--provider", "scripted:echo", "-o", "-", cwd=tmp_path)
    assert result.code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["response"] for r in records] == [f"You said: line {i}" for i in range(3)]
    assert not (tmp_path / "-").exists()


async def test_a_second_run_writing_the_same_output_refuses_and_sends_nothing(
    tmp_path: Path,
) -> None:
    prompts(tmp_path, 50)
    async with SlowEchoServer(latency=0.05) as first_llm, ScriptedOpenAIServer() as second_llm:
        first = await start_cli(
            "in.txt", "--provider", f"openai:{first_llm.base_url}", "-o", "out.jsonl",
            "--concurrency", "1", "--db", "first.db", "-q", cwd=tmp_path,
        )  # fmt: skip
        try:
            deadline = asyncio.get_running_loop().time() + 20
            while not first_llm.answered:  # the first run holds the output now
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.05)
            second = await cli(
                "in.txt", "--provider", f"openai:{second_llm.base_url}", "-o", "out.jsonl",
                "--db", "second.db", cwd=tmp_path,
            )  # fmt: skip
            assert second.code == 2
            assert "another batch is writing" in second.stderr
            assert "out.jsonl" in second.stderr
            assert second_llm.requests == []  # not even the model listing
            assert first.returncode is None
            first.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(first.wait(), 20) == 130
        finally:
            if first.returncode is None:
                first.kill()
                await first.wait()
    answered = read_output(tmp_path / "out.jsonl")
    assert answered
    assert all(r["response"].startswith("You said: line") for r in answered)


def test_the_output_lock_is_released_by_a_finished_holder(tmp_path: Path) -> None:
    path = tmp_path / ".out.lock"
    with exclusive_lock(path, wait=False) as held:
        assert held
    with exclusive_lock(path, wait=False) as held_again:
        assert held_again


async def test_a_sigkilled_run_shows_as_interrupted_and_resumes_from_another_folder(
    tmp_path: Path,
) -> None:
    prompts(tmp_path, 200)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    async with SlowEchoServer(latency=0.05) as llm:
        process = await start_cli(
            "in.txt", "--provider", f"openai:{llm.base_url}", "--batch-id", "gone",
            "--concurrency", "1", "-q", "-o", "out.jsonl", cwd=tmp_path,
        )  # fmt: skip
        deadline = asyncio.get_running_loop().time() + 20
        while len(llm.answered) < 3:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        running = json.loads((await cli("status", "gone", "--json", cwd=tmp_path)).stdout)
        assert running["status"] == "running"
        process.kill()
        await process.wait()
        status = json.loads((await cli("status", "gone", "--json", cwd=tmp_path)).stdout)
        assert status["status"] == "interrupted"
        assert status["eta_seconds"] is None
        human = await cli("status", "gone", cwd=tmp_path)
        assert "batch gone: interrupted" in human.stdout
        listed = await cli("list", "--status", "interrupted", cwd=tmp_path)
        assert "gone" in listed.stdout
        running_now = await cli("list", "--status", "running", "--json", cwd=tmp_path)
        assert json.loads(running_now.stdout) == []
        # The run's paths were stored absolute: it resumes from any folder.
        resumed = await cli(
            "--resume", "--batch-id", "gone", "--db", "../batch.db", "--concurrency", "16",
            cwd=elsewhere,
        )  # fmt: skip
        assert resumed.code == 0, resumed.stderr
    records = read_output(tmp_path / "out.jsonl")
    assert sorted(r["row"] for r in records) == list(range(200))
    assert not (elsewhere / "out.jsonl").exists()


async def test_json_rows_lacking_a_template_column_fail_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    rows = [{"title": "A"}, {"name": "no title"}, {"title": "C"}, {"other": 1}, {"title": "E"}]
    (tmp_path / "in.json").write_text(json.dumps(rows))
    result = await cli(
        "in.json", "--template", "Review {title}", "--provider", "scripted:echo",
        "-o", "out.jsonl", "-q", cwd=tmp_path,
    )  # fmt: skip
    assert result.code == 1, result.stderr  # some rows failed; not "cannot start"
    assert "cannot start" not in result.stderr
    records = {r["row"]: r for r in read_output(tmp_path / "out.jsonl")}
    assert [records[k]["status"] for k in range(5)] == ["done", "failed", "done", "failed", "done"]
    assert records[4]["response"] == "You said: Review E"
    assert "'title' is not a column" in records[1]["error"]


async def test_a_schema_mismatch_reads_as_a_sentence(tmp_path: Path) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "required": ["topic"]}))
    async with ScriptedOpenAIServer(default=reply('{"other": 1}')) as llm:
        result = await run_batch(
            ["classify"],
            providers=[f"openai:{llm.base_url}"],
            schema=str(schema),
            json_retries=0,
            settings=batch_settings(tmp_path),
            db=str(tmp_path / "b.db"),
            no_log=True,
        )
    [record] = list(result.records())
    assert record["error"].startswith("answer is not valid against the schema at (root):")


async def test_the_key_hint_of_an_inline_spec_names_a_variable_that_can_exist(
    tmp_path: Path,
) -> None:
    """The listing fails for another reason, so the run goes on; each row's 401 names the
    family's variable (not KRYTEN_LLM_LLM__PROVIDERS__OPENAI:HTTP://...__API_KEY)."""
    async with ScriptedOpenAIServer(default=status(401)) as llm:
        llm.push_models(status(500))
        result = await _ask_hello(tmp_path, f"openai:{llm.base_url}")
    [record] = list(result.records())
    assert "set OPENAI_API_KEY" in record["error"]


async def test_an_anthropic_key_is_checked_by_its_probe_before_the_run(tmp_path: Path) -> None:
    async with ScriptedOpenAIServer(default=status(401)) as llm:
        with pytest.raises(ConfigError) as caught:
            await _ask_hello(tmp_path, f"anthropic:{llm.base_url}")
        assert len(llm.completions) == 1  # the one-token probe, no row
    assert "export ANTHROPIC_API_KEY=" in str(caught.value)
    with RunStore(tmp_path / "b.db") as store:
        assert store.list_runs() == []


async def _ask_hello(tmp: Path, spec: str) -> BatchResult:
    return await run_batch(
        ["hello"],
        providers=[spec],
        models=["m"],
        settings=batch_settings(tmp),
        db=str(tmp / "b.db"),
        no_log=True,
    )
