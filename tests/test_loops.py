"""Bot loops: the bot never answers itself or other bots, and an unknown bot cannot trap it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from kryten_llm.service import Service
from tests.bridge import Command, FakeBridge
from tests.conftest import running, settings_for, settled
from tests.natsserver import NatsServer

pytestmark = pytest.mark.nats


class ParrotBot:
    """Another bot in the channel: it answers every message of ours by mentioning us back."""

    def __init__(self, bridge: FakeBridge, name: str) -> None:
        self.bridge = bridge
        self.name = name
        self.replies = 0
        self._seen = 0

    async def run(self, seconds: float) -> None:
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            commands: list[Command] = self.bridge.commands
            for command in commands[self._seen :]:
                text = command.body["args"].get("message", "")
                self.replies += 1
                await self.bridge.chat(
                    self.name, f"cynthia, you said '{text[:40]}' #{self.replies}"
                )
            self._seen = len(commands)
            await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    "filters",
    [
        pytest.param({"other_bots": ["ParrotBot"]}, id="listed-bot"),
        pytest.param({"bot_name_patterns": ["(?i)bot$"]}, id="name-pattern"),
    ],
)
async def test_known_bots_are_never_answered(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path, filters: dict[str, Any]
) -> None:
    service = Service(settings_for(nats_server.url, tmp_path, filters=filters))
    async with running(service):
        await bridge.chat("ParrotBot", "cynthia, talk to me")
        await bridge.chat("alice", "cynthia, hi")
        await bridge.wait_for_commands(1)
        # ParrotBot, alice, and the echo of the reply: all taken in and decided.
        await settled(service, bridge, chats=3)
        assert service.stats["ignored_other_bot"] == 1
    assert len(bridge.commands) == 1
    assert bridge.says() == ["You said: alice: cynthia, hi"]  # the echo provider's answer


async def test_an_unknown_bot_cannot_keep_the_bot_talking(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path
) -> None:
    """A bot nobody configured mentions us after each of our messages: the spam guard and
    the limits end the exchange after a few rounds instead of letting it run forever."""
    settings = settings_for(nats_server.url, tmp_path, spam={"max_messages": 3})
    async with running(Service(settings)):
        parrot = ParrotBot(bridge, "Parrot")
        await bridge.chat("Parrot", "cynthia, let us talk forever")
        await parrot.run(3.0)
    assert 1 <= len(bridge.commands) <= 4
    assert parrot.replies == len(bridge.commands)
