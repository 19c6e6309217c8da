"""The dashboard in a real headless Chromium, for a bot running on a real nats-server.

Set ``KRYTEN_LLM_SCREENSHOT=docs/dashboard.png`` to refresh the README's screenshot.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from kryten_llm.config import load_settings
from kryten_llm.service import Service
from tests.bridge import FakeBridge
from tests.cdp import Browser
from tests.conftest import running, settings_for, settled
from tests.natsserver import NatsServer

pytestmark = [pytest.mark.nats, pytest.mark.browser]

TOKEN = "dashboard-token"
XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'


def text(selector: str) -> str:
    return f"document.querySelector({selector!r}).textContent"


async def test_the_dashboard_follows_the_bot_and_pauses_it(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path
) -> None:
    settings = settings_for(
        nats_server.url,
        tmp_path,
        web={"port": 0, "token": TOKEN, "push_interval_seconds": 0.25},
        llm={
            "providers": {"echo": {"type": "scripted", "latency_ms": 20}},
            "default_provider": "echo",
        },
        personalities={
            "cynthia": {"character_name": "CynthiaRothbot", "name_variations": ["cynthia"]},
            "critic": {"character_name": "Roger"},
        },
        active_personality="cynthia",
    )
    async with running(Service(settings)) as service, Browser() as page:
        assert service.surface is not None
        assert service.surface.web is not None
        await page.goto(f"http://127.0.0.1:{service.surface.web.port}/")
        await page.wait_for("Number(document.body.dataset.updates) >= 2")
        assert await page.evaluate(text("#c-chat")) == "0"
        assert await page.evaluate(text("#status")) == "healthy"
        chart_before = await page.evaluate("document.getElementById('rates').toDataURL()")

        await bridge.userlist([("alice", 1), ("bob", 0)])
        for i in range(5):
            await bridge.chat("bob", f"just chatting {i}")
        await bridge.chat("alice", f"cynthia, look {XSS}")
        await bridge.wait_for_commands(1)

        await page.wait_for(f"Number({text('#c-answered')}) >= 1")
        assert int(await page.evaluate(text("#c-chat"))) >= 6
        # the chart moved: a new rate sample with chat traffic was drawn
        await page.wait_for("/chat=[1-9]/.test(document.getElementById('rates').dataset.last)")
        assert await page.evaluate("document.getElementById('rates').toDataURL()") != chart_before
        await page.wait_for("!!document.querySelector('#triggers [data-name=mention]')")
        # the chat text is shown as text: visible in the table, never run
        cells = await page.evaluate(
            "[...document.querySelectorAll('#recent td.text')].map(td => td.textContent)"
        )
        assert any(XSS in cell for cell in cells)
        assert (
            await page.evaluate("document.querySelectorAll('#recent script, #recent img').length")
            == 0
        )
        assert await page.evaluate("window.__xss === undefined")
        assert "2 users" in await page.evaluate(text("#channels"))

        # pause with a real click, after typing the token as an operator would
        await page.type("#token", TOKEN)
        await page.click("#pause")
        await page.wait_for(f"{text('#control-result')} === 'pause: done'")
        await page.wait_for(f"{text('#flags')}.includes('paused')")
        assert service.flags.paused
        await settled(service, bridge, chats=7)  # six, and the echo of the one reply
        answered = len(bridge.says())
        await bridge.chat("alice", "cynthia, still there?")
        await page.wait_for(
            "[...document.querySelectorAll('#recent td')].some(td => td.textContent === 'paused')"
        )
        assert len(bridge.says()) == answered

        screenshot = Path(os.environ.get("KRYTEN_LLM_SCREENSHOT") or tmp_path / "dashboard.png")
        await page.evaluate("window.scrollTo(0, 0)")  # the clicks scrolled down to the controls
        await page.screenshot(screenshot)
    assert (await asyncio.to_thread(os.path.getsize, screenshot)) > 10_000


async def test_a_refused_reload_shows_its_errors_in_a_banner_as_text(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """Click "reload config" after a bad edit: the banner lists each key path; nothing ran."""
    data = {
        "nats": {"servers": [nats_server.url]},
        "web": {"port": 0, "token": TOKEN, "push_interval_seconds": 0.25},
        "logging": {"response_log_dir": str(tmp_path)},
    }
    config = tmp_path / "config.json"
    config.write_text(json.dumps(data))
    service = Service(load_settings(config), config=config)
    async with running(service), Browser() as page:
        assert service.surface is not None
        assert service.surface.web is not None
        await page.goto(f"http://127.0.0.1:{service.surface.web.port}/")
        await page.wait_for("Number(document.body.dataset.updates) >= 1")
        assert await page.evaluate("document.getElementById('config-banner').hidden")
        data["ratelimit"] = {"user_per_hour": 0, XSS: 1}  # a key the page must show as text
        config.write_text(json.dumps(data))
        await page.type("#token", TOKEN)
        await page.click("#reload")
        await page.wait_for("!document.getElementById('config-banner').hidden")
        banner = await page.evaluate(text("#config-banner"))
        assert "config reload by web" in banner
        assert "refused, nothing changed" in banner
        assert "ratelimit.user_per_hour" in banner
        assert f"ratelimit.{XSS}: unknown key" in banner
        assert await page.evaluate("document.querySelectorAll('#config-banner *').length") == 0
        assert await page.evaluate("window.__xss === undefined")
        # fixed and reloaded: the banner goes away
        config.write_text(json.dumps({**data, "ratelimit": {}}))
        await page.click("#reload")
        await page.wait_for(f"{text('#control-result')} === 'reload: done'")
        await page.wait_for("document.getElementById('config-banner').hidden")


async def test_the_dashboard_shows_this_instance_and_its_peers(tmp_path: Path) -> None:
    """Two instances on one JetStream server: each page names itself and the other one."""
    with NatsServer() as server:  # a server of its own: the instance registry starts empty
        services = []
        for name in ("north", "south"):
            config = tmp_path / f"{name}.json"
            config.write_text(
                json.dumps(
                    {
                        "nats": {"servers": [server.url]},
                        "web": {"port": 0, "push_interval_seconds": 0.25},
                        "logging": {"response_log_dir": str(tmp_path / name)},
                        "cluster": {"instance_id": name, "heartbeat_seconds": 0.5},
                    }
                )
            )
            services.append(Service(load_settings(config), config=config))
        north, south = services
        async with running(north), running(south), Browser() as page:
            assert north.surface is not None
            assert north.surface.web is not None
            await page.goto(f"http://127.0.0.1:{north.surface.web.port}/")
            shown = "(document.querySelector('#instances')?.textContent || '')"
            await page.wait_for(f"{shown}.includes('peers: south')", 20)
            assert (await page.evaluate(text("#instances"))).startswith("instance north (")


async def test_the_dashboard_switches_a_trigger_off_and_resets_it(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """A click on a trigger word's checkbox is a saved override; "reset" puts the file back."""
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "nats": {"servers": [nats_server.url]},
                "web": {"port": 0, "token": TOKEN, "push_interval_seconds": 0.25},
                "logging": {"response_log_dir": str(tmp_path)},
                "triggers": {"words": [{"name": "snack", "patterns": ["popcorn"]}]},
            }
        )
    )
    overrides = tmp_path / "config.overrides.json"
    service = Service(load_settings(config), config=config)
    async with running(service), Browser() as page:
        assert service.surface is not None
        assert service.surface.web is not None
        await page.goto(f"http://127.0.0.1:{service.surface.web.port}/")
        await page.wait_for("!document.getElementById('tuning').hidden")
        await page.type("#token", TOKEN)
        await page.click("#tuning-words tr[data-word=snack] input[type=checkbox]")
        await page.wait_for(f"{text('#control-result')} === 'trigger: done'")
        assert service.settings.triggers.words[0].enabled is False
        saved = json.loads(overrides.read_text())["overrides"]
        assert [o["path"] for o in saved] == [["triggers", "words", "snack", "enabled"]]
        await page.wait_for(f"{text('#tuning-overrides')}.includes('triggers.words.snack.enabled')")
        await page.click("#tuning-overrides button")
        await page.wait_for(f"{text('#control-result')} === 'reset: done'")
        assert service.settings.triggers.words[0].enabled is True
        assert json.loads(overrides.read_text())["overrides"] == []
        await page.wait_for(f"{text('#tuning-overrides')}.includes('no overrides')")
