"""An explore run in its own process shows on the bot's dashboard and is stopped from it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest
from nats.aio.msg import Msg

from kryten_llm.service import Service
from tests.conftest import running, settings_for
from tests.explore_helpers import Gated, ItemResponder, assert_counts_add_up, read_run
from tests.natsserver import NatsServer
from tests.openai_server import ScriptedOpenAIServer
from tests.test_explore_cli import finish, start

pytestmark = pytest.mark.nats

TOKEN = "explore-token"


async def state(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with http.get(f"{base}/api/state") as response:
        return await response.json()  # type: ignore[no-any-return]


async def test_an_explore_run_is_visible_and_stoppable_from_the_dashboard(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    settings = settings_for(nats_server.url, tmp_path, web={"port": 0, "token": TOKEN})
    out = tmp_path / "run"
    async with running(Service(settings)) as service, aiohttp.ClientSession() as http:
        assert service.surface is not None
        assert service.surface.web is not None
        base = f"http://127.0.0.1:{service.surface.web.port}"
        process = await start(
            tmp_path,
            *("--topic", "odd pairs", "--provider", "scripted", "--producers", "2"),
            *("--min-yield", "0", "--target", "1000000", "--output", str(out)),
            *("--nats", nats_server.url),
        )
        try:
            deadline = time.monotonic() + 20
            runs: list[dict[str, Any]] = []
            while not (runs and runs[0]["items"] > 0):
                assert time.monotonic() < deadline, "the run never showed on the dashboard"
                await asyncio.sleep(0.2)
                runs = (await state(http, base))["explore"]
            (run,) = runs
            assert run["topic"] == "odd pairs"
            assert run["final"] is False
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with http.post(
                f"{base}/api/control",
                json={"action": "explore_stop", "value": run["run"]},
                headers=headers,
            ) as response:
                assert response.status == 200
            code, stderr = await finish(process)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert code == 0, stderr
        deadline = time.monotonic() + 5
        while not (await state(http, base))["explore"][0]["final"]:
            assert time.monotonic() < deadline, "the final snapshot never arrived"
            await asyncio.sleep(0.1)
        (final,) = (await state(http, base))["explore"]
    assert final["stop_reason"] == "stopped"
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["stop_reason"] == "stopped"
    assert metadata["items"] == final["items"]


async def test_a_nats_server_that_goes_away_mid_run_does_not_break_the_run(
    tmp_path: Path,
) -> None:
    """The dashboard's NATS server stops while a run publishes its progress: the link gives up
    (one warning), the run carries on to its target, exits 0 without a traceback, and its
    files are whole."""
    out = tmp_path / "run"
    gate = Gated(ItemResponder(6))
    with NatsServer() as server:
        async with ScriptedOpenAIServer(responder=gate) as llm:
            nc = await nats.connect(server.url)
            seen = asyncio.Event()

            async def on_progress(_msg: Msg) -> None:
                seen.set()

            await nc.subscribe("kryten.llm.explore.progress", cb=on_progress)
            process = await start(
                tmp_path,
                *("--topic", "phrases", "--provider", f"openai:{llm.base_url}", "--model", "m"),
                *("--producers", "1", "--min-yield", "0", "--target", "40"),
                *("--output", str(out), "--nats", server.url, "--log-level", "WARNING"),
            )
            try:
                await asyncio.wait_for(seen.wait(), 15)
                await nc.close()
                server.stop()
                assert process.stderr is not None
                early = b""  # stderr up to the link's warning (or 12 s without it)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(12):
                        while b"explore_link_failed" not in early:
                            line = await process.stderr.readline()
                            if not line:
                                break
                            early += line
                gate.open = True
                code, rest = await finish(process)
                stderr = early.decode() + rest
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
    assert code == 0, stderr
    assert stderr.count("explore_link_failed") == 1, stderr
    assert "Traceback" not in stderr
    items, lines, metadata = read_run(out)
    assert len(items) == 40
    assert lines == [item["text"] for item in items]
    assert metadata["stop_reason"] == "target"
    assert metadata["state"] == "stopped"
    assert_counts_add_up(metadata, 40)
