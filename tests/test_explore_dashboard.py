"""An explore run in its own process shows on the bot's dashboard and is stopped from it."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kryten_llm.service import Service
from tests.conftest import running, settings_for
from tests.natsserver import NatsServer
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
