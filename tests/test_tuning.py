"""Tuning in one process: characters per channel, reloads from the dashboard and NATS, layers.

Against a real nats-server with the kryten-py bridge; the bot is a :class:`Service` in this
process so that its parts can be looked at. The process-level tests (SIGHUP, restarts) are in
``test_reload.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest

from kryten_llm.bot.changes import ratelimit_overrides
from kryten_llm.bot.tuning import Tuner
from kryten_llm.cli import main
from kryten_llm.config import Settings, load_settings
from kryten_llm.config.layers import find_sources
from kryten_llm.errors import ConfigError
from kryten_llm.service import Service
from tests.bridge import FakeBridge
from tests.conftest import config_for, eventually, running, settled, write_json
from tests.natsserver import NatsServer
from tests.test_ops_service import TOKEN, control

pytestmark = pytest.mark.nats

PERSONALITIES = {
    "cynthia": {"character_name": "CynthiaRothbot", "name_variations": ["cynthia"]},
    "critic": {"character_name": "Roger", "name_variations": ["rog"]},
}


def two_channels(nats_url: str, tmp_path: Path) -> dict[str, Any]:
    return config_for(
        nats_url,
        tmp_path / "logs",
        channels=[
            {"channel": "MyChannel"},
            {
                "channel": "Cinema",
                "personality": "critic",
                "ratelimit": {"global_cooldown_seconds": 600},
            },
        ],
        personalities=PERSONALITIES,
        web={"token": TOKEN},
    )


async def test_two_channels_two_characters_and_their_own_limits_in_one_process(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    config = write_json(tmp_path / "config.json", two_channels(nats_server.url, tmp_path))
    service = Service(load_settings(config), config=config)
    async with (
        FakeBridge(nats_server.url) as mine,
        FakeBridge(nats_server.url, channel="Cinema") as cinema,
        running(service),
    ):
        await mine.chat("alice", "rog, what do you think?")  # not a name in MyChannel
        await mine.chat("alice", "cynthia, what do you think?")
        await cinema.chat("bob", "cynthia, are you here?")  # not a name in Cinema
        await cinema.chat("bob", "rog, what do you think?")
        await cinema.chat("carol", "rog, and you?")  # Cinema's own cooldown: refused
        await mine.chat("dave", "cynthia, me too")  # MyChannel counts apart: answered
        await settled(service, chats=9)  # six, and the echoes of three replies
    assert [c.body["meta"]["channel"] for c in mine.commands] == ["MyChannel", "MyChannel"]
    assert mine.says() == [
        "You said: alice: cynthia, what do you think?",
        "You said: dave: cynthia, me too",
    ]
    assert cinema.says() == ["You said: bob: rog, what do you think?"]
    records = [
        json.loads(line)
        for file in (tmp_path / "logs").glob("responses-*.jsonl")
        for line in file.read_text().splitlines()
    ]
    refused = [r for r in records if r["username"] == "carol"]
    assert [(r["reason"], r["limit"]) for r in refused] == [("rate_limited", "global_cooldown")]
    assert service.bot is not None
    prompts = {
        key: context.character.reply.prompts.system
        for key, context in service.bot.channels.items()
        if context.character.reply is not None
    }
    assert prompts["cytu.be/cinema"].startswith("You are Roger,")
    assert prompts["cytu.be/mychannel"].startswith("You are CynthiaRothbot,")


async def test_reload_from_the_dashboard_reports_restart_needed_and_invalid_files(
    nats_server: NatsServer, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    data = two_channels(nats_server.url, tmp_path)
    config = write_json(tmp_path / "config.json", data)
    service = Service(load_settings(config), config=config)
    async with running(service):
        data["nats"]["connect_timeout_seconds"] = 3
        data["channels"][0]["personality"] = "critic"
        data["channels"].append({"channel": "Added"})
        write_json(config, data)
        status, body = await control(session, service, {"action": "reload"})
        assert status == 200
        assert body["reload"]["changed"] == ["channels"]
        assert body["reload"]["restart_needed"] == [
            "nats",
            "channels (added: ['cytu.be/added'], removed: none)",
        ]
        assert service.settings.nats.connect_timeout_seconds == 1  # kept until a restart
        assert service.settings.channels[0].personality == "critic"  # applied
        assert service.bot is not None
        assert list(service.bot.channels) == ["cytu.be/mychannel", "cytu.be/cinema"]

        data["channels"][1]["personality"] = "nobody"
        write_json(config, data)
        status, body = await control(session, service, {"action": "reload"})
        assert status == 400
        assert body["errors"][0]["path"] == "(root)"
        assert "channels.1.personality 'nobody'" in body["errors"][0]["problem"]
        assert service.settings.channels[1].personality == "critic"  # nothing changed
        state = service.surface.state() if service.surface is not None else {}
        assert state["tuning"]["last"]["ok"] is False  # the dashboard's banner
        assert "nobody" in state["tuning"]["last"]["errors"][0]["problem"]
        status, body = await control(session, service, {"action": "reload"}, token="wrong")
        assert status == 401


async def test_every_instance_answers_a_reload_and_the_runtime_changes(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """Two bots of one service name both get kryten.llm.command (no shared queue group)."""
    data = two_channels(nats_server.url, tmp_path)
    data["web"]["port"] = 0
    config = write_json(tmp_path / "config.json", data)
    services = []
    for name in ("one", "two"):  # one working folder here: tell the instances apart by id
        cli = {"cluster": {"instance_id": name}}
        services.append(
            Service(
                load_settings(config, **cli),
                config=config,
                cli=cli,
                overrides_file=tmp_path / f"{name}.overrides.json",
            )
        )
    first, second = services
    nc = await nats.connect(nats_server.url)
    try:
        async with running(first), running(second):
            inbox = nc.new_inbox()
            replies = await nc.subscribe(inbox)
            body = {
                "command": "ratelimit",
                "token": TOKEN,
                "channel": "Cinema",
                "global_cooldown_seconds": 5,
            }
            await nc.publish("kryten.llm.command", json.dumps(body).encode(), reply=inbox)
            answers = [json.loads((await replies.next_msg(5)).data) for _ in range(2)]
            assert {a["instance"] for a in answers} == {first.instance, second.instance}
            assert all(a["ratelimit"]["changed"] == ["channels"] for a in answers), answers
            for service in (first, second):
                (cinema,) = [c for c in service.settings.channels if c.channel == "Cinema"]
                assert cinema.ratelimit is not None
                assert cinema.ratelimit.global_cooldown_seconds == 5
            listed = json.loads(
                (
                    await nc.request(
                        "kryten.llm.command",
                        json.dumps({"command": "triggers", "token": TOKEN}).encode(),
                        timeout=5,
                    )
                ).data
            )
            assert listed["triggers"]["cytu.be/cinema"]["personality"] == "critic"
            assert listed["triggers"]["cytu.be/cinema"]["own"] == ["ratelimit"]
    finally:
        await nc.close()


async def test_unknown_names_in_a_change_are_refused_with_what_exists(
    nats_server: NatsServer, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    config = write_json(tmp_path / "config.json", two_channels(nats_server.url, tmp_path))
    service = Service(load_settings(config), config=config)
    async with running(service):
        cases = [
            ({"action": "personality", "value": {"name": "x"}}, "configured: critic, cynthia"),
            ({"action": "trigger", "value": {"name": "x", "enabled": False}}, "no trigger word"),
            ({"action": "providers", "value": {"order": ["gpt"]}}, "configured: echo"),
            ({"action": "ratelimit", "value": {"channel": "Nowhere", "x": 1}}, "no channel"),
            ({"action": "ratelimit", "value": {"user_per_hour": 0}}, "greater than or equal"),
            ({"action": "reset", "value": "ratelimit"}, "no override at ratelimit"),
        ]
        for request, expected in cases:
            status, body = await control(session, service, request)
            assert status in (400, 404), body
            assert expected in body["error"], body
        assert not (tmp_path / "config.overrides.json").exists()


def test_layers_merge_in_order_and_explain_names_the_layer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_json(
        tmp_path / "config.json",
        {"ratelimit": {"user_per_hour": 5, "global_per_minute": 4}, "bot": {"username": "A"}},
    )
    write_json(tmp_path / "config.local.json", {"ratelimit": {"global_per_minute": 9}})
    monkeypatch.setenv("KRYTEN_LLM_RATELIMIT__GLOBAL_PER_HOUR", "99")
    (tmp_path / "config.overrides.json").write_text(
        json.dumps(
            {
                "schema": 1,
                "overrides": [
                    {"path": ["ratelimit", "user_cooldown_seconds"], "value": 7, "by": "ann"}
                ],
            }
        )
    )
    settings = load_settings(config)
    limits = settings.ratelimit
    assert (limits.user_per_hour, limits.global_per_minute) == (5, 9)
    assert (limits.global_per_hour, limits.user_cooldown_seconds) == (99, 7)
    assert settings.bot.username == "A"
    expected = {
        "ratelimit.user_per_hour": f"config file {config}",
        "ratelimit.global_per_minute": f"local file {tmp_path / 'config.local.json'}",
        "ratelimit.global_per_hour": "environment (KRYTEN_LLM_RATELIMIT__GLOBAL_PER_HOUR)",
        "ratelimit.user_cooldown_seconds": "runtime override",
        "ratelimit.mention_cooldown_seconds": "default",
    }
    for key, origin in expected.items():
        assert main(["validate-config", "--config", str(config), "--explain", key]) == 0
        out = capsys.readouterr().out
        assert origin in out, (key, out)
    assert main(["validate-config", "--config", str(config)]) == 0
    summary = capsys.readouterr().out
    assert "ratelimit.user_cooldown_seconds = 7 (by ann" in summary
    assert f"local {tmp_path / 'config.local.json'}" in summary
    assert main(["validate-config", "--config", str(config), "--explain", "ratelimit.nope"]) == 2
    assert "keys here: global_per_minute" in capsys.readouterr().err


def test_the_environment_names_the_file_when_no_config_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    named = write_json(tmp_path / "elsewhere.json", {"bot": {"username": "FromEnv"}})
    monkeypatch.setenv("KRYTEN_LLM_CONFIG", str(named))
    monkeypatch.chdir(tmp_path)
    write_json(tmp_path / "config.local.json", {"bot": {"username": "Local"}, "dry_run": True})
    settings = load_settings(None)
    assert settings.bot.username == "FromEnv"  # the named file is above the local one
    assert settings.dry_run is True


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        ('{"overrides": []}', "not an overrides file"),
        ('{"schema": 1, "overrides": [{"path": "ratelimit"}]}', "path list and a value"),
    ],
)
def test_a_corrupt_overrides_file_stops_startup_with_its_path_and_fix(
    tmp_path: Path, content: str, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_json(tmp_path / "config.json", {})
    overrides = tmp_path / "config.overrides.json"
    overrides.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    ((where, what, fix),) = info.value.problems[:1]
    assert str(overrides) in where
    assert problem in what
    assert "delete" in fix
    assert main(["--config", str(config)]) == 2
    assert str(overrides) in capsys.readouterr().err


def test_an_override_of_a_trigger_that_is_gone_from_the_file_is_named(tmp_path: Path) -> None:
    config = write_json(
        tmp_path / "config.json", {"triggers": {"words": [{"name": "a", "patterns": ["a"]}]}}
    )
    (tmp_path / "config.overrides.json").write_text(
        json.dumps(
            {
                "schema": 1,
                "overrides": [{"path": ["triggers", "words", "gone", "probability"], "value": 0}],
            }
        )
    )
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    ((where, what, fix),) = info.value.problems
    assert where == "triggers.words.gone.probability"
    assert "no item 'gone' in triggers.words (configured: a)" in what
    assert "reset this override" in fix


async def test_a_runtime_change_reaches_the_trigger_engine_at_once(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path
) -> None:
    """Runtime changes reach the trigger engine: a disabled word stops firing at once."""
    data = two_channels(nats_server.url, tmp_path)
    data["triggers"] = {"words": [{"name": "snack", "patterns": ["popcorn"]}]}
    data["channels"] = [{"channel": "MyChannel"}]
    config = write_json(tmp_path / "config.json", data)
    service = Service(load_settings(config), config=config)
    async with running(service):
        result = await service.tune("trigger", {"name": "snack", "probability": 0}, "test")
        assert result["trigger"]["changed"] == ["triggers.words"]
        await bridge.chat("alice", "popcorn!")
        await bridge.chat("alice", "cynthia, still there?")
        await settled(service, bridge, chats=3)
        await eventually(lambda: len(bridge.commands) == 1)
    assert bridge.says() == ["You said: alice: cynthia, still there?"]


def test_an_override_finds_a_channel_given_only_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A list item is found in whichever layer configured it, not only in the files."""
    config = write_json(tmp_path / "config.json", {"personalities": PERSONALITIES})
    monkeypatch.setenv("KRYTEN_LLM_CHANNELS", '[{"channel": "Foo"}]')
    (tmp_path / "config.overrides.json").write_text(
        json.dumps(
            {
                "schema": 1,
                "overrides": [
                    {"path": ["channels", "cytu.be/foo", "personality"], "value": "critic"}
                ],
            }
        )
    )
    (channel,) = load_settings(config).channels
    assert (channel.channel, channel.personality) == ("Foo", "critic")


async def test_a_reload_keeps_this_instance_among_the_others(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """Regression: a reload once dropped the cluster from the intake (every instance answered)."""
    data = two_channels(nats_server.url, tmp_path)
    data["cluster"] = {"enabled": True, "instance_id": "solo"}
    config = write_json(tmp_path / "config.json", data)
    service = Service(load_settings(config), config=config)
    async with running(service):
        assert service.bot is not None
        assert service.bot.intake.admission.cluster is not None
        await service.tune("reload", None, "test")
        await service.tune("ratelimit", {"user_cooldown_seconds": 3}, "test")
        assert service.bot.intake.admission.cluster is service.cluster


async def test_a_change_that_cannot_be_put_in_force_is_not_saved(tmp_path: Path) -> None:
    """The overrides file only ever describes what is in force."""
    config = write_json(tmp_path / "config.json", {"ratelimit": {"user_per_hour": 5}})
    saved = tmp_path / "config.overrides.json"
    saved.write_text('{"schema": 1, "overrides": []}\n')

    failing = False

    async def apply(new: Settings, old: Settings) -> None:
        if failing:
            raise RuntimeError("the new providers could not be built")

    tuner = Tuner(
        lambda overrides: find_sources(config, overrides=overrides), load_settings(config), apply
    )
    # A change that is put in force is saved (so the file could change)...
    await tuner.change(ratelimit_overrides(tuner.settings, {"user_per_hour": 6}, "test"), "test")
    in_force = saved.read_text()
    assert in_force != '{"schema": 1, "overrides": []}\n'
    # ...one that fails to be put in force is not.
    failing = True
    change = ratelimit_overrides(tuner.settings, {"user_per_hour": 7}, "test")
    with pytest.raises(RuntimeError):
        await tuner.change(change, "test")
    assert saved.read_text() == in_force
    assert len(tuner.overrides) == 1
    assert tuner.settings.ratelimit.user_per_hour == 6
