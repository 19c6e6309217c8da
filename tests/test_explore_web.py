"""The explore page: ``kryten-llm explore --web`` as a real process driven by a real headless
Chromium, its API and protections, and the same page on the bot's dashboard."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from kryten_llm.config import load_settings
from kryten_llm.explore.runs import RunBoard
from kryten_llm.explore.web import ExplorePage
from kryten_llm.ops.web import protected_app
from kryten_llm.service import Service
from kryten_llm.webguard import check_token
from tests.cdp import Browser
from tests.conftest import running, settings_for
from tests.explore_helpers import assert_counts_add_up, assert_no_duplicates, read_run
from tests.natsserver import NatsServer

ENV = {k: v for k, v in os.environ.items() if not k.startswith("KRYTEN_LLM_")}
TOKEN = "explore-page-token"
# A random provider slow enough (100 ms an answer) that a run lasts until it is stopped.
CONFIG = {
    "llm": {
        "providers": {
            "dice": {"type": "random", "seed": 3, "latency_ms": 100},
            "echo": {"type": "scripted", "model": "echo"},
        },
        "default_provider": "dice",
    }
}


@contextlib.asynccontextmanager
async def explore_web(cwd: Path, *args: str) -> AsyncIterator[str]:
    """``python -m kryten_llm.explore --web --port 0`` in ``cwd``; yields its page address and
    checks that Ctrl+C (SIGINT) ends it with 0."""
    config = cwd / "config.json"
    config.write_text(json.dumps(CONFIG))
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "kryten_llm.explore", "--web", "--port", "0"),
        *("--config", str(config), *args),
        cwd=cwd,
        env=ENV,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        line = (await asyncio.wait_for(process.stderr.readline(), 20)).decode()
        match = re.search(r"(http://127\.0\.0\.1:\d+/explore/)", line)
        assert match, line
        yield match.group(1)
        process.send_signal(2)
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def text(selector: str) -> str:
    return f"document.querySelector({selector!r}).textContent"


@pytest.mark.browser
async def test_a_run_is_started_watched_stopped_and_downloaded_from_the_page(
    tmp_path: Path,
) -> None:
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    async with explore_web(tmp_path) as url, Browser() as page:
        await page.goto(url)
        await page.wait_for("document.querySelectorAll('#providers option').length === 2")
        await page.type("#topic", "haunted lighthouses")
        await page.evaluate(
            "document.querySelector('#providers option[value=dice]').selected = true;"
            "document.getElementById('stop-kind').value = 'target';"
            "document.getElementById('stop-value').value = '1000000';"
        )
        await page.click("#start")
        await page.wait_for(f"{text('#message')} === 'started haunted-lighthouses'")
        await page.wait_for(f"{text('#state')} === 'running'")
        # progress and items arrive while it runs
        await page.wait_for(f"Number({text('#items')}) >= 40")
        await page.wait_for("document.querySelectorAll('#newest li').length === 15")
        first = await page.evaluate(text("#newest li"))
        await page.wait_for(f"{text('#newest li')} !== {json.dumps(first)}")
        assert await page.evaluate(text("#provider-rows td")) == "dice"
        producers = await page.evaluate(
            "[...document.querySelectorAll('#producer-rows tr')].map(r => r.cells[0].textContent)"
        )
        assert producers == ["p0", "p1"]
        await page.wait_for("!!document.querySelector('#runs tr[data-run=haunted-lighthouses]')")

        await page.click("#stop")
        await page.wait_for(f"{text('#state')} !== 'running'")
        await page.wait_for(f"{text('#stop-reason')} === 'stopped'")
        shown = int(await page.evaluate(text("#items")))

        allow = {"behavior": "allow", "downloadPath": str(downloads)}
        await page.send("Page.setDownloadBehavior", allow)
        await page.wait_for("!!document.querySelector('#files a[data-file=\"output.txt\"]')")
        await page.click('#files a[data-file="output.txt"]')
        saved = downloads / "output.txt"
        for _ in range(100):
            if saved.exists() and saved.stat().st_size > 0:
                break
            await asyncio.sleep(0.1)
        folder = tmp_path / "output" / "haunted-lighthouses"
        items, lines, metadata = read_run(folder)
        assert saved.read_text().splitlines() == lines
        assert len(lines) == shown == metadata["items"]
        assert metadata["stop_reason"] == "stopped"
        assert_counts_add_up(metadata, len(items))
        assert_no_duplicates(lines)


async def test_the_api_resumes_a_topic_and_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    async with explore_web(tmp_path) as url, aiohttp.ClientSession() as http:
        api = url + "api"

        async def start(**form: Any) -> tuple[int, dict[str, Any]]:
            async with http.post(f"{api}/runs", json=form) as response:
                return response.status, await response.json()

        async def finished(run_id: str) -> dict[str, Any]:
            for _ in range(200):
                async with http.get(f"{api}/runs/{run_id}") as response:
                    detail: dict[str, Any] = await response.json()
                if not detail["running"] and detail["stop_reason"]:
                    return detail
                await asyncio.sleep(0.05)
            raise AssertionError(f"{run_id} never finished")

        assert await start(topic="odd pairs", providers=["random:5"], iterations=2) == (
            200,
            {"ok": True, "id": "odd-pairs", "resumed": 0},
        )
        first = await finished("odd-pairs")
        assert first["stop_reason"] == "iterations"
        status, body = await start(topic="odd pairs", providers=["random:6"], iterations=2)
        assert (status, body["resumed"]) == (200, first["items"])
        second = await finished("odd-pairs")
        assert second["items"] > first["items"]

        status, body = await start(topic="x", producers=0)
        assert status == 400
        assert "producers" in body["error"]
        status, body = await start(topic="x", providers=["nosuch"])
        assert status == 400
        assert "nosuch" in body["error"]
        async with http.get(f"{api}/runs/odd-pairs/files/..%2Fconfig.json") as response:
            assert response.status == 404
        async with http.get(f"{api}/runs/nope") as response:
            assert response.status == 404
        async with http.get(f"{api}/runs", headers={"Host": "rebound.example"}) as response:
            assert response.status == 421
        # Another site's page in the operator's browser cannot start a run (no token here):
        # a form-like body, or a foreign Origin, is refused before anything is read.
        form = json.dumps({"topic": "drive-by", "providers": ["random:1"]})
        async with http.post(
            f"{api}/runs", data=form, headers={"Content-Type": "text/plain"}
        ) as response:
            assert response.status == 403
        async with http.post(
            f"{api}/runs",
            data=form,
            headers={"Content-Type": "application/json", "Origin": "http://evil.example"},
        ) as response:
            assert response.status == 403
        async with http.get(f"{api}/runs") as response:
            assert "drive-by" not in await response.text()
        async with http.get(url) as response:
            csp = response.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp
            assert "'unsafe-inline'" not in csp


async def test_beyond_loopback_every_request_takes_the_token(tmp_path: Path) -> None:
    """Bound elsewhere (the check is the same whatever the address; the test listens on
    127.0.0.1), reading and acting need the token; without one configured it will not start."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps(CONFIG))
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "kryten_llm.explore", "--web", "--host", "0.0.0.0"),
        *("--config", str(config)),
        env=ENV,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 2
    assert "KRYTEN_LLM_WEB__TOKEN" in stderr.decode()

    app, exposed = protected_app("0.0.0.0")
    assert exposed

    def guard(presented: str | None) -> None:
        check_token(TOKEN, presented)

    board = RunBoard(tmp_path / "out", lambda: load_settings(config))
    app.router.add_routes(ExplorePage(board, act=guard, read=guard).routes())
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    api = f"http://127.0.0.1:{runner.addresses[0][1]}/explore/api"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{api}/runs") as response:
                assert response.status == 401
            form = {"topic": "odd pairs", "providers": ["random"], "iterations": 1}
            async with http.post(f"{api}/runs", json=form) as response:
                assert response.status == 401
            assert not (tmp_path / "out").exists()
            bearer = {"Authorization": f"Bearer {TOKEN}"}
            async with http.post(f"{api}/runs", json=form, headers=bearer) as response:
                assert response.status == 200
            await asyncio.wait_for(asyncio.shield(board.close()), 10)
            async with http.get(f"{api}/runs/odd-pairs/files/output.txt?token={TOKEN}") as got:
                assert got.status == 200
                assert len((await got.text()).splitlines()) > 0
    finally:
        await board.close()
        await runner.cleanup()


@pytest.mark.nats
async def test_the_bots_dashboard_starts_a_run_with_its_control_token(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the dashboard's runs go to ./output
    settings = settings_for(
        nats_server.url,
        tmp_path,
        web={"port": 0, "token": TOKEN},
        llm={"providers": {"dice": {"type": "random", "seed": 1}}, "default_provider": "dice"},
    )
    async with running(Service(settings)) as service, aiohttp.ClientSession() as http:
        assert service.surface is not None
        assert service.surface.web is not None
        api = f"http://127.0.0.1:{service.surface.web.port}/explore/api"
        async with http.get(f"{api}/providers") as response:
            assert await response.json() == {"providers": ["dice"]}
        form = {"topic": "snack ideas", "iterations": 2}
        async with http.post(f"{api}/runs", json=form) as response:
            assert response.status == 401
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with http.post(f"{api}/runs", json=form, headers=headers) as response:
            assert (await response.json())["id"] == "snack-ideas"
        for _ in range(200):
            async with http.get(f"{api}/runs/snack-ideas") as response:
                detail = await response.json()
            if detail["stop_reason"]:
                break
            await asyncio.sleep(0.05)
        assert detail["stop_reason"] == "iterations"
        assert detail["providers"]["dice"]["requests"] == 4
    items, lines, metadata = read_run(tmp_path / "output" / "snack-ideas")
    assert len(lines) == metadata["items"] == len(items) > 0
