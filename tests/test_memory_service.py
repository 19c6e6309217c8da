"""Memory in the running service (real nats-server, kryten-py bridge, scripted HTTP models):
notes never reach a provider the operator has not allowed; the optional extraction step."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kryten_llm.memory.extract import EXTRACT_PROMPT
from kryten_llm.pipeline.recall import RECALL_HEADER
from kryten_llm.service import Service
from tests.bridge import FakeBridge
from tests.conftest import eventually, read_log, running, settings_for, settled
from tests.natsserver import NatsServer
from tests.openai_server import ScriptedOpenAIServer, reply
from tests.test_memory_live import FORGOTTEN, KUNG_FU, user_turns, varied_model
from tests.test_ops_service import url

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


async def test_forget_me_is_a_response_log_line_and_memory_counts_on_metrics(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """ "forget me" is a decision like a reply's: one line (reason ``forgotten``, the
    confirmation and its request id, not counted as an answer); /metrics counts the note
    stored and the user forgotten."""
    async with varied_model() as model:
        settings = settings_for(
            nats_server.url,
            tmp_path,
            llm={"default_provider": "model", "providers": {"model": provider(model.base_url)}},
            memory={"enabled": True, "path": str(tmp_path / "m.db"), "providers": ["model"]},
        )
        async with running(Service(settings)) as service:
            await bridge.chat("alice", f"cynthia, remember that {KUNG_FU}")
            await bridge.chat("alice", "Cynthia, forget me!")
            commands = await bridge.wait_for_commands(2, timeout=20)
            await eventually(lambda: any(r["reason"] == "forgotten" for r in read_log(tmp_path)))
            async with session.get(url(service, "/metrics")) as response:
                text = await response.text()
    assert commands[1].body["args"]["message"] == FORGOTTEN
    forgotten = [r for r in read_log(tmp_path) if r["reason"] == "forgotten"]
    assert len(forgotten) == 1
    line = forgotten[0]
    assert line["schema"] == 1
    assert (line["username"], line["input"], line["kind"]) == (
        "alice",
        "Cynthia, forget me!",
        "chat",
    )
    assert line["trigger"] == {"kind": "mention", "name": "mention"}
    assert line["answered"] is False
    assert line["parts"] == [FORGOTTEN]
    assert line["request_ids"] == [commands[1].body["meta"]["request_id"]]
    assert line["correlation_id"]
    memory = {
        s.labels["event"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "kryten_llm_memory_total"
    }
    assert memory == {"stored": 1.0, "forgotten": 1.0}


async def test_forget_me_in_a_pm_in_dry_run_logs_what_would_have_been_said(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path
) -> None:
    """In dry-run nothing is sent; the line says so and holds the confirmation it would send."""
    settings = settings_for(
        nats_server.url,
        tmp_path,
        dry_run=True,
        memory={"enabled": True, "path": str(tmp_path / "m.db")},
    )
    async with running(Service(settings)):
        await bridge.pm("alice", "forget me")
        await eventually(lambda: any(r["reason"] == "forgotten" for r in read_log(tmp_path)))
        await bridge.flush()
    (line,) = read_log(tmp_path)
    assert (line["kind"], line["trigger"]) == ("pm", {"kind": "pm", "name": "pm"})
    assert line["dry_run"] is True
    assert line["parts"] == [FORGOTTEN]
    assert "request_ids" not in line
    assert bridge.commands == []


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


async def test_the_operator_lists_and_forgets_a_user_over_nats_and_the_dashboard(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path
) -> None:
    """``memory`` is an operator action: token required, list then forget, the store agrees."""
    settings = settings_for(
        nats_server.url,
        tmp_path,
        web={"port": 0, "token": "mem-token"},
        memory={"enabled": True, "path": str(tmp_path / "m.db")},
    )
    async with running(Service(settings)) as service, aiohttp.ClientSession() as session:
        await bridge.chat("alice", "cynthia, remember that I like kung fu films")
        await settled(service, bridge, chats=2)
        assert service.bot is not None
        assert service.bot.memory is not None
        await service.bot.memory.settle()
        nc = await nats.connect(nats_server.url)
        try:
            ask = {"command": "memory", "action": "list", "user": "alice"}
            refused = json.loads(
                (await nc.request("kryten.llm.command", json.dumps(ask).encode(), timeout=5)).data
            )
            assert refused["ok"] is False
            listed = json.loads(
                (
                    await nc.request(
                        "kryten.llm.command",
                        json.dumps({**ask, "token": "mem-token"}).encode(),
                        timeout=5,
                    )
                ).data
            )
        finally:
            await nc.close()
        assert listed["ok"] is True
        assert [n["text"] for n in listed["memory"]["notes"]] == ["I like kung fu films"]
        assert service.surface is not None
        assert service.surface.web is not None
        async with session.post(
            f"http://127.0.0.1:{service.surface.web.port}/api/control",
            json={"action": "memory", "value": {"action": "forget", "user": "alice"}},
            headers={"Authorization": "Bearer mem-token"},
        ) as response:
            body = await response.json()
        assert (response.status, body["memory"]["deleted"]) == (200, 1)
    assert rows(tmp_path / "m.db") == []
