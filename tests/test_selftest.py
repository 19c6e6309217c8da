"""``kryten-llm selftest``: the whole system passes its own scenarios, a broken part fails the
scenarios that need it with a line that says why, and ``--keep-running`` leaves a stack that
answers until Ctrl+C."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import nats
import pytest

from kryten_llm.selftest import SCENARIOS, Behaviour, run_selftest
from tests.batch_helpers import child_env
from tests.conftest import read_log

pytestmark = [pytest.mark.nats, pytest.mark.slow]
RUN_SECONDS = 90.0  # bound of one whole self-test (it takes a few seconds here)


def _lines(output: str) -> dict[str, str]:
    """Scenario name -> its printed line."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        for scenario in SCENARIOS:
            if re.match(rf"(PASS|FAIL)  {re.escape(scenario.name)}\s+\d+\.\d\d s  ", line):
                found[scenario.name] = line
    return found


async def _selftest_process(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kryten_llm",
        "selftest",
        *args,
        env=child_env(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_selftest_passes_every_scenario_and_its_traces_name_real_ids(
    tmp_path: Path,
) -> None:
    """Exit 0, one PASS line per scenario; the ids in a trace are the ones in the bot's
    response log and on the wire (the line is not made up)."""
    process = await _selftest_process("--scratch", str(tmp_path))
    out, err = await asyncio.wait_for(process.communicate(), RUN_SECONDS)
    output = out.decode()
    assert process.returncode == 0, output + err.decode()
    lines = _lines(output)
    assert sorted(lines) == sorted(s.name for s in SCENARIOS), output
    assert all(line.startswith("PASS") for line in lines.values()), output
    assert f"{len(SCENARIOS)}/{len(SCENARIOS)} passed" in output

    failover = lines["provider failover"]
    assert "HTTP flaky: 1 request (500)" in failover
    assert "provider_failed" in failover
    assert "answered by scripted after flaky" in failover
    chat_id, say_id = re.search(r"sim chatMsg (\w{8}) .* NATS say (\w{8}) ", failover).groups()  # type: ignore[union-attr]
    (record,) = [r for r in read_log(tmp_path / "logs") if r["correlation_id"].startswith(chat_id)]
    assert record["provider"] == "scripted"
    assert record["fallback_from"] == ["flaky"]
    assert [rid[:8] for rid in record["request_ids"]] == [say_id]

    pool = lines["all providers down -> pool line"]
    assert "responses: fallback from pool blackout" in pool
    spam = lines["spam refused"]
    assert "responses: spam (identical)" in spam
    assert "no command" in spam
    batch = lines["batch 50 rows, SIGKILL, resume"]
    killed = int(re.search(r"SIGKILL at (\d+)/50 rows", batch).group(1))  # type: ignore[union-attr]
    assert 0 < killed < 50
    assert "50 rows, each once; store: completed" in batch
    outputs = json.loads((tmp_path / "batch-out.json").read_text(encoding="utf-8"))
    assert sorted(r["row"] for r in outputs) == list(range(50))
    explore = lines["explore, 2 producers"]
    assert "p0 3 requests, p1 3 requests" in explore


async def test_a_provider_that_never_answers_fails_the_scenarios_that_need_it(
    tmp_path: Path,
) -> None:
    """The HTTP provider accepts requests and never answers: failover and the pool line
    fail, each saying what was awaited and how far the message got; the scenarios that do
    not use that provider still pass; the exit code is 1."""
    out = io.StringIO()
    code = await asyncio.wait_for(
        run_selftest(scratch=tmp_path, out=out, provider=Behaviour.SILENT), RUN_SECONDS
    )
    output = out.getvalue()
    assert code == 1, output
    lines = _lines(output)
    for name in ("provider failover", "all providers down -> pool line"):
        assert lines[name].startswith(f"FAIL  {name}"), output
        assert "no decision in the response log about" in lines[name]
        assert "HTTP flaky: 1 request (no answer)" in lines[name]
    for name in ("mention -> reply", "spam refused", "batch 50 rows, SIGKILL, resume"):
        assert lines[name].startswith("PASS"), output
    assert lines["explore, 2 producers"].startswith("PASS"), output
    assert f"{len(SCENARIOS) - 2}/{len(SCENARIOS)} passed" in output


async def test_keep_running_leaves_a_reachable_stack_until_ctrl_c(tmp_path: Path) -> None:
    """After the scenarios the printed NATS server and dashboard answer; Ctrl+C (SIGINT)
    then stops the bot and the server and exits 0."""
    process = await _selftest_process("--keep-running", "--scratch", str(tmp_path))
    assert process.stdout is not None
    printed: list[str] = []
    try:
        async with asyncio.timeout(RUN_SECONDS):
            while not printed or not printed[-1].startswith("  talk to it"):
                line = (await process.stdout.readline()).decode()
                assert line, "".join(printed)
                printed.append(line)
        text = "".join(printed)
        nats_url = re.search(r"NATS\s+(nats://\S+)", text).group(1)  # type: ignore[union-attr]
        dashboard = re.search(r"dashboard\s+(http://\S+)", text).group(1)  # type: ignore[union-attr]
        bot_pid = int(re.search(r"bot\s+pid (\d+)", text).group(1))  # type: ignore[union-attr]
        async with aiohttp.ClientSession() as http, http.get(f"{dashboard}health") as response:
            health = await response.json()
        assert health["status"] in ("ok", "degraded"), health
        nc = await nats.connect(nats_url)
        assert nc.is_connected
        await nc.close()
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
    code = await asyncio.wait_for(process.wait(), 30)
    assert code == 0
    with pytest.raises(ProcessLookupError):
        os.kill(bot_pid, 0)  # the bot was stopped and reaped
    port = int(nats_url.rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
