"""When every provider is down, the bot says lines from its fallback pools, and logs it."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from kryten_llm.cli import main
from kryten_llm.pools import FallbackPool, personality_pool_name
from kryten_llm.service import Service
from tests.bridge import FakeBridge
from tests.conftest import eventually, read_log, running, settings_for
from tests.natsserver import NatsServer, free_port

pytestmark = pytest.mark.nats

LINES = [
    "The projector gremlins ate my answer.",
    "Ask me again after the reel change.",
    "My brain is buffering, like this stream.",
]


def all_down(nats_url: str, log_dir: Path, **sections: Any) -> Any:
    dead = [f"http://127.0.0.1:{free_port()}/v1" for _ in range(2)]
    return settings_for(
        nats_url,
        log_dir,
        llm={
            "providers": {
                "primary": {"type": "openai", "base_url": dead[0], "timeout_seconds": 1},
                "backup": {"type": "openai", "base_url": dead[1], "timeout_seconds": 1},
            },
            "default_provider": "primary",
            "fallback": ["backup"],
            "retry": {"attempts": 1, "base_delay_seconds": 0.01},
        },
        **sections,
    )


async def test_with_every_provider_down_a_mention_is_answered_from_the_pool(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path
) -> None:
    pool = FallbackPool.load(tmp_path / "fallback", personality_pool_name("cynthia"))
    assert pool.add(LINES) == 3
    settings = all_down(nats_server.url, tmp_path)
    async with running(Service(settings)) as service:
        assert service.fallback_lines == 3
        for i in range(7):
            await bridge.chat(f"user{i}", f"cynthia, question {i}?")  # apart: no spam guard
            await bridge.wait_for_commands(i + 1)
        await eventually(lambda: len(read_log(tmp_path)) == 7)
    said = bridge.says()
    assert len(said) == 7
    assert set(said) <= set(LINES)
    assert all(a != b for a, b in itertools.pairwise(said))  # never twice in a row
    assert set(said[:3]) == set(LINES)  # a whole rotation before any repeat
    for record in read_log(tmp_path):
        assert record["answered"] is True
        assert record["reason"] == "fallback"
        assert record["fallback_pool"] == "personality-cynthia"
        assert record["error_type"] == "ProviderUnavailable"
        assert record["provider"] is None


async def test_a_trigger_word_uses_its_own_pool_first(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path
) -> None:
    FallbackPool.load(tmp_path / "fallback", "trivia").add(["Trivia is closed tonight."])
    FallbackPool.load(tmp_path / "fallback", personality_pool_name("cynthia")).add(LINES)
    settings = all_down(
        nats_server.url,
        tmp_path,
        triggers={"words": [{"name": "trivia", "patterns": ["trivia"]}]},
    )
    async with running(Service(settings)):
        await bridge.chat("bob", "trivia time!")
        await bridge.wait_for_commands(1)
        await bridge.chat("bob", "cynthia, anything?")
        await bridge.wait_for_commands(2)
    first, second = bridge.says()
    assert first == "Trivia is closed tonight."
    assert second in LINES


async def test_without_a_pool_the_failure_is_logged_and_nothing_is_said(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path
) -> None:
    settings = all_down(nats_server.url, tmp_path)
    async with running(Service(settings)):
        await bridge.chat("alice", "cynthia, hello?")
        await eventually(lambda: len(read_log(tmp_path)) == 1)
    (record,) = read_log(tmp_path)
    assert (record["answered"], record["reason"]) == (False, "llm_failed")
    assert "fallback_pool" not in record
    assert bridge.commands == []


def test_a_broken_pool_file_is_a_startup_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pools = tmp_path / "pools"
    pools.mkdir()
    (pools / "personality-cynthia.json").write_text("{not json")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"fallback": {"pool_dir": str(pools)}}))
    assert main(["--config", str(config), "--validate-config"]) == 2
    err = capsys.readouterr().err
    assert "personality-cynthia.json" in err
    assert "not valid JSON" in err


async def test_lines_added_while_the_bot_runs_are_used_and_never_overwritten(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path
) -> None:
    """An explore run adds to the pool file the bot reads; the bot picks them up, writes nothing."""
    folder = tmp_path / "fallback"
    name = personality_pool_name("cynthia")
    FallbackPool.load(folder, name).add(LINES[:1])
    settings = all_down(nats_server.url, tmp_path)
    async with running(Service(settings)) as service:
        await bridge.chat("user0", "cynthia, one?")
        await bridge.wait_for_commands(1)
        FallbackPool.load(folder, name).add(LINES[1:])  # what explore --for-personality does
        for i in range(1, 5):
            await bridge.chat(f"user{i}", f"cynthia, question {i}?")
            await bridge.wait_for_commands(i + 1)
        assert service.fallback_lines == 3
    said = bridge.says()
    assert said[0] == LINES[0]
    assert set(said[1:]) & set(LINES[1:])  # the new lines are in use
    assert all(a != b for a, b in itertools.pairwise(said))
    assert FallbackPool.load(folder, name).lines == LINES  # the file still holds every line


async def test_pool_lines_pass_the_validators_content_checks(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path
) -> None:
    """A blocklisted pool line is skipped for the next one, as any reply would be."""
    FallbackPool.load(tmp_path / "fallback", personality_pool_name("cynthia")).add(
        ["This line says forbidden things.", "This line is fine."]
    )
    settings = all_down(nats_server.url, tmp_path, validation={"blocklist": ["(?i)forbidden"]})
    async with running(Service(settings)):
        for i in range(3):
            await bridge.chat(f"user{i}", f"cynthia, question {i}?")
            await bridge.wait_for_commands(i + 1)
    assert bridge.says() == ["This line is fine."] * 3
