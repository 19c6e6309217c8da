"""Memory in the running service (real nats-server, kryten-py bridge, scripted HTTP models):
notes never reach a provider the operator has not allowed; the optional extraction step."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from kryten_llm.memory.extract import EXTRACT_PROMPT
from kryten_llm.memory.recall import RECALL_HEADER
from kryten_llm.service import Service
from tests.bridge import FakeBridge
from tests.conftest import eventually, running, settings_for, settled
from tests.natsserver import NatsServer
from tests.openai_server import ScriptedOpenAIServer, reply
from tests.test_memory_live import user_turns, varied_model

pytestmark = pytest.mark.nats


def provider(url: str) -> dict[str, Any]:
    return {"type": "openai", "base_url": url, "model": "m"}


def rows(db: Path) -> list[tuple[str, str, str]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return list(conn.execute("SELECT about, source, text FROM notes ORDER BY id"))


async def test_notes_are_withheld_when_a_provider_in_the_chain_is_not_allowed(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path
) -> None:
    """The default provider may see notes, its fallback may not: no request carries them."""
    async with (
        varied_model() as model,
        ScriptedOpenAIServer() as backup,
    ):
        settings = settings_for(
            nats_server.url,
            tmp_path,
            llm={
                "default_provider": "model",
                "fallback": ["backup"],
                "providers": {
                    "model": provider(model.base_url),
                    "backup": provider(backup.base_url),
                },
            },
            memory={"enabled": True, "path": str(tmp_path / "m.db"), "providers": ["model"]},
        )
        async with running(Service(settings)) as service:
            await bridge.chat("alice", "cynthia, remember that I like kung fu films")
            await bridge.chat("alice", "cynthia, so what should I watch?")
            await settled(service, bridge, chats=4)
            assert service.bot is not None
            assert service.bot.memory is not None
            await service.bot.memory.settle()
    assert rows(tmp_path / "m.db") == [("alice", "said", "I like kung fu films")]
    assert len(model.completions) == 2
    assert all(RECALL_HEADER not in user_turns(r.json) for r in model.completions)
    assert backup.completions == []


async def test_extraction_stores_what_a_user_says_about_themselves(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path
) -> None:
    """With extraction on, the extractor reads a mention; its fact is recalled next time."""
    async with (
        varied_model() as model,
        ScriptedOpenAIServer(default=reply("- I work night shifts at the docks")) as extractor,
    ):
        settings = settings_for(
            nats_server.url,
            tmp_path,
            llm={
                "default_provider": "model",
                "providers": {
                    "model": provider(model.base_url),
                    "extractor": provider(extractor.base_url),
                },
            },
            memory={
                "enabled": True,
                "path": str(tmp_path / "m.db"),
                "providers": ["model", "extractor"],
                "extraction": {"enabled": True, "provider": "extractor"},
            },
        )
        async with running(Service(settings)) as service:
            memory = service.bot.memory if service.bot is not None else None
            assert memory is not None
            await bridge.chat("bob", "cynthia, long night at the docks again")
            await eventually(lambda: memory.size == 1)
            await bridge.chat("bob", "cynthia, any film before I sleep?")
            await settled(service, bridge, chats=4)
            await memory.settle()
    # Both mentions were read; the second repeated the fact, which is stored once.
    assert len(extractor.completions) == 2
    asked = extractor.completions[0]
    assert asked.json is not None
    assert asked.json["messages"][0]["content"] == EXTRACT_PROMPT
    assert asked.json["messages"][1]["content"] == "«cynthia, long night at the docks again»"
    assert rows(tmp_path / "m.db") == [("bob", "extracted", "I work night shifts at the docks")]
    assert "- bob about themselves: «I work night shifts at the docks»" in user_turns(
        model.completions[-1].json
    )
