"""``python -m kryten_llm.explore`` as a real process: SIGKILL then resume, Ctrl+C, exit codes,
the scripted word list and the fallback pool. Servers are scripted OpenAI-compatible HTTP
servers on 127.0.0.1 running in the test's event loop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from kryten_llm.explore import StopReason, cli
from kryten_llm.explore.plan import plan_run
from kryten_llm.pools import FallbackPool
from tests.explore_helpers import (
    Gated,
    ItemResponder,
    assert_counts_add_up,
    assert_no_duplicates,
    read_run,
)
from tests.openai_server import ScriptedOpenAIServer

ENV = {k: v for k, v in os.environ.items() if not k.startswith("KRYTEN_LLM_")}


async def start(cwd: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kryten_llm.explore",
        "--progress",
        "lines",
        "--progress-interval",
        "0.2",
        *args,
        cwd=cwd,
        env=ENV,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def finish(process: asyncio.subprocess.Process, timeout: float = 20) -> tuple[int, str]:
    _, stderr = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, stderr.decode()


async def explore(cwd: Path, *args: str) -> tuple[int, str]:
    return await finish(await start(cwd, *args))


async def wait_for_items(folder: Path, count: int, timeout: float = 15) -> int:
    """Poll output.json (always whole: it is replaced atomically) until it has ``count`` items."""
    for _ in range(int(timeout / 0.05)):
        await asyncio.sleep(0.05)
        try:
            items = json.loads((folder / "output.json").read_text())["items"]
        except FileNotFoundError:
            continue
        if len(items) >= count:
            return len(items)
    raise TimeoutError(f"{folder} did not reach {count} items")


async def test_a_killed_run_resumes_without_repeating_items(tmp_path: Path) -> None:
    """SIGKILL mid-run leaves whole files; the resumed run keeps every checkpointed item, in
    order, and adds only new ones up to the target."""
    out = tmp_path / "run"
    async with (
        ScriptedOpenAIServer(responder=ItemResponder(1)) as a,
        ScriptedOpenAIServer(responder=ItemResponder(2)) as b,
    ):
        providers = ["--provider", f"openai:{a.base_url}", "--provider", f"openai:{b.base_url}"]
        common = ["--topic", "phrases", "--output", str(out), "--producers", "3", *providers]
        process = await start(tmp_path, *common, "--min-yield", "0", "--checkpoint-items", "10")
        try:
            await wait_for_items(out, 40)
        finally:
            process.kill()  # SIGKILL: no cleanup at all
            await process.wait()
        assert process.returncode == -signal.SIGKILL
        killed, lines, metadata = read_run(out)  # every file parses: nothing torn
        # output.json is written first at each checkpoint; a kill between the three writes
        # leaves output.txt and metadata.json one checkpoint behind, never ahead or torn.
        assert lines == [item["text"] for item in killed][: len(lines)]
        assert metadata["items"] <= len(killed)
        counts = metadata["counts"]
        parts = ("new", "exact_duplicates", "near_duplicates", "rejected")
        assert counts["received"] == sum(counts[p] for p in parts)
        # A temp file of a write cut short may be left over; it never replaced anything.
        target = len(killed) + 60
        code, stderr = await explore(tmp_path, *common, "--target", str(target))
    assert code == 0, stderr
    assert f"resuming {out} with {len(killed)} known items" in stderr
    items, lines, metadata = read_run(out)
    assert items[: len(killed)] == killed
    assert len(items) == target
    assert_no_duplicates(lines)
    assert_counts_add_up(metadata, target)
    assert metadata["stop_reason"] == "target"
    assert metadata["sessions"] == 2
    assert not list(out.glob(".*.tmp"))  # the resumed run swept any leftover


async def test_ctrl_c_stops_cleanly_with_files_written(tmp_path: Path) -> None:
    """SIGINT ends the run with exit code 130; the files hold everything found."""
    out = tmp_path / "run"
    async with ScriptedOpenAIServer(responder=ItemResponder(3)) as llm:
        process = await start(
            tmp_path,
            *("--topic", "phrases", "--output", str(out), "--min-yield", "0"),
            *("--provider", f"openai:{llm.base_url}"),
        )
        try:
            await wait_for_items(out, 20)
        finally:
            process.send_signal(signal.SIGINT)
        code, stderr = await finish(process)
    assert code == 130, stderr
    assert "interrupted" in stderr
    assert "Traceback" not in stderr
    items, lines, metadata = read_run(out)
    assert metadata["stop_reason"] == "interrupted"
    assert lines == [item["text"] for item in items]
    assert_no_duplicates(lines)
    assert_counts_add_up(metadata, len(items))
    assert "explore: " in stderr  # periodic plain progress lines when not on a terminal


async def test_the_scripted_word_list_needs_no_server(tmp_path: Path) -> None:
    """--provider scripted runs the whole command offline; iterations stop it."""
    code, stderr = await explore(
        tmp_path, "--topic", "Demo: words!", "--provider", "scripted", "--iterations", "3"
    )
    assert code == 0, stderr
    items, lines, metadata = read_run(tmp_path / "output" / "demo-words")
    assert metadata["counts"]["requests"] == 6  # two producers by default
    assert metadata["counts"]["exact_duplicates"] > 0
    assert metadata["stop_reason"] == "iterations"
    assert_no_duplicates(lines)
    assert_counts_add_up(metadata, len(items))


async def test_for_trigger_fills_the_pool(tmp_path: Path) -> None:
    """--for-trigger writes the new lines into fallback/<name>.json under --pool-dir."""
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps({"triggers": {"words": [{"name": "films", "patterns": ["film"]}]}})
    )
    code, stderr = await explore(
        tmp_path,
        *("--config", str(config), "--for-trigger", "films", "--provider", "scripted"),
        *("--iterations", "2", "--pool-dir", str(tmp_path / "pools")),
    )
    assert code == 0, stderr
    pool = FallbackPool.load(tmp_path / "pools", "films")
    items, _, _ = read_run(tmp_path / "output" / "chat-lines-about-film")
    assert pool.lines == [item["text"] for item in items]
    assert pool.next_line() in pool.lines


async def test_usage_errors_exit_2_with_the_fix(tmp_path: Path) -> None:
    """Unknown providers, unknown triggers, no topic, bad numbers: exit 2 and a fix line."""
    cases = [
        (["--topic", "x", "--provider", "nosuch"], "not a configured provider"),
        (["--topic", "x", "--for-trigger", "nosuch"], "no trigger word named"),
        ([], "--topic: required"),
        (["--topic", "x", "--similarity", "0"], "--similarity"),
        (["--output", str(tmp_path / "empty"), "--resume"], "holds no output.json"),
    ]
    for args, message in cases:
        code, stderr = await explore(tmp_path, *args)
        assert code == 2, (args, stderr)
        assert message in stderr
        assert "fix:" in stderr


async def test_a_provider_that_refuses_the_key_exits_1(tmp_path: Path) -> None:
    """Every producer failing is an error exit naming the problem."""
    from tests.openai_server import status

    async with ScriptedOpenAIServer(default=status(401)) as llm:
        code, stderr = await explore(
            tmp_path,
            *("--topic", "x", "--provider", f"openai:{llm.base_url}", "--model", "m"),
        )
    assert code == 1, stderr
    assert "providers_failed" in stderr
    assert "authentication failed" in stderr


async def test_a_second_run_on_a_folder_in_use_exits_2_and_leaves_the_first_alone(
    tmp_path: Path,
) -> None:
    """Two runs on one output folder would delete each other's temp files and overwrite each
    other's checkpoints: the second fails at once naming the folder; the first finishes."""
    out = tmp_path / "run"
    gate = Gated(ItemResponder(5))
    async with ScriptedOpenAIServer(responder=gate) as llm:
        common = ["--topic", "phrases", "--output", str(out), "--min-yield", "0"]
        provider = ["--provider", f"openai:{llm.base_url}", "--model", "m", "--producers", "1"]
        first = await start(tmp_path, *common, *provider, "--target", "40")
        try:
            await wait_for_items(out, 10)  # running, holding the folder, waiting for the gate
            code, stderr = await explore(tmp_path, *common, *provider, "--target", "50")
            assert code == 2, stderr
            assert f"{out}: another explore run is writing to this folder" in stderr
            gate.open = True
            first_code, first_stderr = await finish(first)
        finally:
            if first.returncode is None:
                first.kill()
                await first.wait()
    assert first_code == 0, first_stderr
    items, lines, metadata = read_run(out)
    assert len(items) == 40
    assert lines == [item["text"] for item in items]
    assert_counts_add_up(metadata, 40)
    assert metadata["sessions"] == 1


async def test_the_checkpoint_is_read_once_when_the_run_is_planned(tmp_path: Path) -> None:
    """The run resumes from the checkpoint the plan read (under the folder's lock), not from a
    second read of the folder."""
    out = tmp_path / "run"
    args = ["--topic", "demo", "--provider", "scripted", "--output", str(out)]
    code, stderr = await explore(tmp_path, *args, "--iterations", "2")
    assert code == 0, stderr
    before, _, _ = read_run(out)
    plan = plan_run(cli.build_parser().parse_args([*args, "--iterations", "1"]))
    try:
        (out / "output.json").unlink()  # gone: only the plan still knows the first run's items
        assert await cli._explore(plan) is StopReason.ITERATIONS
    finally:
        plan.store.unlock()
    items, _, metadata = read_run(out)
    assert items[: len(before)] == before
    assert metadata["sessions"] == 2


async def test_a_folder_of_another_topic_exits_2_naming_the_flags(tmp_path: Path) -> None:
    """The explorer refuses a checkpoint of another topic in its own terms; the command line
    tells which flags to change."""
    out = tmp_path / "run"
    args = ["--provider", "scripted", "--output", str(out), "--iterations", "1"]
    code, stderr = await explore(tmp_path, "--topic", "films", *args)
    assert code == 0, stderr
    code, stderr = await explore(tmp_path, "--topic", "books", *args)
    assert code == 2, stderr
    assert "--output: the folder holds the topic 'films'" in stderr
    assert "fix: use the same --topic, or another --output folder" in stderr


async def test_a_folder_with_a_foreign_output_json_exits_2(tmp_path: Path) -> None:
    """An output.json that is not a checkpoint is named, with a fix that names ``--output``."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "output.json").write_text('{"not": "ours"}')
    code, stderr = await explore(
        tmp_path, "--topic", "x", "--provider", "scripted", "--output", str(out)
    )
    assert code == 2, stderr
    assert f"{out / 'output.json'}: not an explorer checkpoint" in stderr
    assert "fix: choose another --output folder or remove the file" in stderr


async def test_an_auto_model_provider_that_lists_nothing_exits_2(tmp_path: Path) -> None:
    """An inline provider without ``--model`` is probed for its model first (through the
    manager's probe); a server that lists no model stops the run before any request."""
    async with ScriptedOpenAIServer(models=()) as llm:
        code, stderr = await explore(
            tmp_path, "--topic", "x", "--provider", f"openai:{llm.base_url}", "--iterations", "1"
        )
        assert llm.completions == []
    assert code == 2, stderr
    assert "provider openai-1: openai-1: model is auto but the server lists none" in stderr
    assert "fix: check its URL" in stderr
