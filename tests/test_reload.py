"""Tuning the live bot as a process: SIGHUP reloads, runtime changes last, bad edits change nothing.

The bot runs as a subprocess against a real nats-server with a monitoring port (``/connz``
shows whether it reconnected); the kryten-py bridge publishes the chat. A message the bot must
*not* answer is followed by a mention it must answer: events of a channel are handled in order,
so once that mention's reply is here, the message before it was decided.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS

from tests.botproc import BotProcess
from tests.bridge import FakeBridge
from tests.conftest import config_for, eventually, write_json
from tests.natsserver import ConfiguredNatsServer

pytestmark = pytest.mark.nats

TOKEN = "reload-test-token"


@pytest.fixture(scope="module")
def server() -> Iterator[ConfiguredNatsServer]:
    with ConfiguredNatsServer() as started:
        yield started


@pytest.fixture
async def nc(server: ConfiguredNatsServer) -> AsyncIterator[NATS]:
    client = await nats.connect(server.url)
    yield client
    await client.close()


@pytest.fixture
async def bridge(server: ConfiguredNatsServer) -> AsyncIterator[FakeBridge]:
    async with FakeBridge(server.url) as fake:
        yield fake


def config_data(server: ConfiguredNatsServer, tmp_path: Path, words: list[str]) -> dict[str, Any]:
    config = config_for(
        server.url,
        tmp_path / "logs",
        triggers={"words": [{"name": "snack", "patterns": words}]},
        llm={
            "providers": {"echo": {"type": "scripted", "model": "echo", "latency_ms": 1000}},
            "default_provider": "echo",
        },
    )
    config["logging"] = {"response_log_dir": str(tmp_path / "logs"), "format": "json"}
    # One worker: replies go out in the order their messages came, so once the closing mention
    # is answered, a reply to any line before it would already have been said.
    config["processing"] = {**config.get("processing", {}), "workers": 1}
    return config


@pytest.fixture
async def processes() -> AsyncIterator[list[BotProcess]]:
    started: list[BotProcess] = []
    yield started
    for bot in started:
        bot.close()


async def command(nc: NATS, body: dict[str, Any]) -> dict[str, Any]:
    reply = await nc.request("kryten.llm.command", json.dumps(body).encode(), timeout=5)
    return json.loads(reply.data)  # type: ignore[no-any-return]


async def start(processes: list[BotProcess], config: Path, nc: NATS) -> BotProcess:
    bot = BotProcess(config, env={"KRYTEN_LLM_WEB__TOKEN": TOKEN})
    processes.append(bot)

    async def answers() -> bool:
        try:
            return (await command(nc, {"command": "ping"}))["ok"] is True
        except Exception:
            return False

    for _ in range(200):
        assert bot.proc.poll() is None, bot.logged[-5:]
        if bot.events("service_started") and await answers():
            return bot
        await asyncio.sleep(0.1)
    raise AssertionError("the bot did not start")


async def answered_after(bridge: FakeBridge, done: int, *messages: tuple[str, str]) -> list[str]:
    """Publish ``messages`` then a mention; return what the bot said after ``done`` replies."""
    for username, text in messages:
        await bridge.chat(username, text)
    last = f"cynthia, done with {done}?"  # never the same text: the spam guard counts repeats
    await bridge.chat("zed", last)
    await eventually(lambda: any(f"zed: {last}" in s for s in bridge.says()[done:]), 15)
    return bridge.says()[done:]


def bot_connections(server: ConfiguredNatsServer) -> list[int]:
    return [c["cid"] for c in server.connz()["connections"] if c.get("name") == "kryten-llm"]


async def test_sighup_applies_an_edited_trigger_without_reconnecting_or_dropping_a_reply(
    server: ConfiguredNatsServer,
    bridge: FakeBridge,
    nc: NATS,
    processes: list[BotProcess],
    tmp_path: Path,
) -> None:
    data = config_data(server, tmp_path, ["popcorn"])
    config = write_json(tmp_path / "config.json", data)
    bot = await start(processes, config, nc)
    connections = bot_connections(server)
    assert len(connections) == 1
    await bridge.chat("bob", "cynthia, a slow one please")  # in flight for a second
    data["triggers"]["words"][0]["patterns"] = ["nachos"]
    write_json(config, data)
    bot.proc.send_signal(signal.SIGHUP)
    await eventually(lambda: bot.events("config_changed"), 10)
    (changed,) = bot.events("config_changed")
    assert [c["path"] for c in changed["changes"]] == ["triggers.words"]
    said = await answered_after(bridge, 0, ("carol", "nachos for all"), ("dave", "popcorn?"))
    assert any("bob: cynthia, a slow one please" in s for s in said)  # the reply in flight
    assert any("carol: nachos for all" in s for s in said)
    assert not any("dave" in s for s in said)
    assert bot.proc.poll() is None
    assert bot_connections(server) == connections  # same process, same connection
    assert await bot.stop() == 0


async def test_an_invalid_edit_changes_nothing_and_names_the_key(
    server: ConfiguredNatsServer,
    bridge: FakeBridge,
    nc: NATS,
    processes: list[BotProcess],
    tmp_path: Path,
) -> None:
    data = config_data(server, tmp_path, ["popcorn"])
    config = write_json(tmp_path / "config.json", data)
    bot = await start(processes, config, nc)
    data["triggers"]["words"][0]["patterns"] = ["nachos"]
    data["ratelimit"]["user_per_hour"] = -3
    data["triggers"]["words"][0]["probabilty"] = 0.5
    write_json(config, data)
    bot.proc.send_signal(signal.SIGHUP)
    await eventually(lambda: bot.events("config_reload_failed"), 10)
    errors = " ".join(bot.events("config_reload_failed")[0]["errors"])
    assert "ratelimit.user_per_hour" in errors
    assert "triggers.words.0.probabilty" in errors
    assert "did you mean 'probability'" in errors
    # The NATS command reports the same, with every error's path.
    refused = await command(nc, {"command": "reload", "token": TOKEN})
    assert refused["ok"] is False
    paths = {e["path"] for e in refused["errors"]}
    assert {"ratelimit.user_per_hour", "triggers.words.0.probabilty"} <= paths
    said = await answered_after(bridge, 0, ("carol", "nachos?"), ("dave", "popcorn!"))
    assert any("dave: popcorn!" in s for s in said)  # the old word still fires
    assert not any("carol" in s for s in said)
    assert bot.proc.poll() is None
    assert await bot.stop() == 0


async def test_a_runtime_change_is_saved_survives_a_restart_and_reset_undoes_it(
    server: ConfiguredNatsServer,
    bridge: FakeBridge,
    nc: NATS,
    processes: list[BotProcess],
    tmp_path: Path,
) -> None:
    config = write_json(tmp_path / "config.json", config_data(server, tmp_path, ["popcorn"]))
    overrides = tmp_path / "config.overrides.json"
    bot = await start(processes, config, nc)
    change = {"command": "trigger", "name": "snack", "enabled": False, "by": "alice"}
    refused = await command(nc, {**change, "token": "wrong"})
    assert refused == {"ok": False, "error": "a valid control token is required"}
    assert not overrides.exists()
    done = await command(nc, {**change, "token": TOKEN})
    assert done["ok"] is True
    assert done["trigger"]["changed"] == ["triggers.words"]
    await eventually(lambda: bot.events("config_changed"), 5)  # the log is read by a thread
    (audit,) = bot.events("config_changed")
    assert audit["by"] == "nats by alice"
    assert audit["changes"][0]["old"][0]["enabled"] is True
    assert audit["changes"][0]["new"][0]["enabled"] is False
    saved = json.loads(overrides.read_text())["overrides"]
    assert [(o["path"], o["value"]) for o in saved] == [
        (["triggers", "words", "snack", "enabled"], False)
    ]
    said = await answered_after(bridge, 0, ("dave", "popcorn!"))
    assert not any("dave" in s for s in said)
    assert await bot.stop() == 0

    bot = await start(processes, config, nc)  # restarted: the change is still in force
    done_before = len(bridge.says())
    said = await answered_after(bridge, done_before, ("erin", "popcorn!"))
    assert not any("erin" in s for s in said)
    listed = await command(nc, {"command": "overrides", "token": TOKEN})
    assert [o["path"] for o in listed["overrides"]] == [["triggers", "words", "snack", "enabled"]]
    reset = await command(nc, {"command": "reset", "token": TOKEN})
    assert reset["reset"]["changed"] == ["triggers.words"]
    assert json.loads(overrides.read_text())["overrides"] == []
    done_before = len(bridge.says())
    said = await answered_after(bridge, done_before, ("fred", "popcorn!"))
    assert any("fred: popcorn!" in s for s in said)
    assert await bot.stop() == 0
