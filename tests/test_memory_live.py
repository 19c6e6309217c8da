"""Memory through the real bot process: a note survives a restart, "forget me" empties the store.

The bot runs as ``python -m kryten_llm`` against a real nats-server; kryten-py publishes the
chat exactly as the bridge does; the model is a scripted OpenAI-compatible server on 127.0.0.1
that records every request, so the tests assert on what the provider received. The SQLite file
is read directly to check what is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from itertools import count
from pathlib import Path
from typing import Any

import nats
import pytest

from kryten_llm.bus.settle import settle
from kryten_llm.pipeline.recall import RECALL_HEADER
from tests.botproc import BotProcess
from tests.bridge import FakeBridge
from tests.conftest import eventually, settings_for
from tests.natsserver import NatsServer
from tests.openai_server import ScriptedOpenAIServer

pytestmark = pytest.mark.nats

KUNG_FU = "I like kung fu films"
FORGOTTEN = "alice: done, I have forgotten everything I knew about you."


def distinct_replies() -> Iterator[str]:
    """Replies that differ enough for the validator's repetition check."""
    for n in count(1):
        yield f"Answer {n}: " + ["popcorn first.", "the projector hums.", "quiet, please."][n % 3]


def varied_model() -> ScriptedOpenAIServer:
    """A scripted model whose replies never trip the repetition check."""
    replies = distinct_replies()
    return ScriptedOpenAIServer(responder=lambda body: next(replies))


async def remember_kung_fu(bridge: FakeBridge) -> None:
    """alice asks the bot to remember a fact; returns once the bot has answered."""
    await bridge.chat("alice", f"cynthia, remember that {KUNG_FU}")
    await bridge.wait_for_commands(1, timeout=20)


def write_config(path: Path, nats_url: str, model_url: str, **memory: Any) -> Path:
    settings = settings_for(
        nats_url,
        path.parent,
        llm={
            "default_provider": "model",
            "providers": {"model": {"type": "openai", "base_url": model_url, "model": "m"}},
        },
        memory={
            "enabled": True,
            "path": str(path.parent / "memory.db"),
            "providers": ["model"],
            "refresh_seconds": 0.2,
            **memory,
        },
        logging={"response_log_dir": str(path.parent), "level": "INFO", "format": "json"},
    )
    path.write_text(settings.model_dump_json())
    return path


@contextlib.asynccontextmanager
async def bot_process(config: Path, nats_url: str) -> AsyncIterator[BotProcess]:
    """The bot, started and announced on NATS; stopped with SIGTERM, exiting 0, afterwards."""
    nc = await nats.connect(nats_url)
    started = asyncio.Event()

    async def on_startup(msg: Any) -> None:
        started.set()

    await nc.subscribe("kryten.lifecycle.llm.startup", cb=on_startup)
    await settle(nc)
    bot = BotProcess(config)
    try:
        await asyncio.wait_for(started.wait(), 30)
        yield bot
    except BaseException:
        print(bot.tail())
        raise
    finally:
        code = await bot.stop()
        await nc.close()
    assert code == 0, bot.tail()


async def memory_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``kryten-llm memory ...`` as the operator runs it, in a thread (it blocks)."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "kryten_llm", "memory", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def stored(db: Path) -> list[tuple[str, str, str]]:
    """``(about, author, text)`` of every row in the store, read with plain sqlite3."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return list(conn.execute("SELECT about, author, text FROM notes ORDER BY id"))


def user_turns(body: dict[str, Any] | None) -> str:
    assert body is not None
    return "\n".join(m["content"] for m in body["messages"] if m["role"] == "user")


def system_turn(body: dict[str, Any] | None) -> str:
    assert body is not None
    (system,) = [m["content"] for m in body["messages"] if m["role"] == "system"]
    return str(system)


async def test_a_note_survives_a_restart_and_is_recalled_in_the_prompt(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path
) -> None:
    """ "remember that ..." -> restart -> the provider's next request quotes the note."""
    async with varied_model() as model:
        config = write_config(tmp_path / "config.json", nats_server.url, model.base_url)
        async with bot_process(config, nats_server.url):
            await remember_kung_fu(bridge)
        assert stored(tmp_path / "memory.db") == [("alice", "alice", KUNG_FU)]
        async with bot_process(config, nats_server.url):
            await bridge.chat("alice", "cynthia, what should we watch tonight?")
            await bridge.wait_for_commands(2, timeout=20)
    last = model.completions[-1].json
    assert "what should we watch tonight" in user_turns(last)
    assert f"- alice about themselves: «{KUNG_FU}»" in user_turns(last)
    assert "kung fu" not in system_turn(last)  # a note is data in a user turn, never a rule


async def test_forget_me_empties_the_store_and_is_confirmed_in_chat(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path
) -> None:
    """ "forget me": every note about alice is gone from the file, the chat gets the confirmation,
    no model is asked about it, bob's note stays, and alice's next prompt recalls nothing."""
    async with varied_model() as model:
        config = write_config(tmp_path / "config.json", nats_server.url, model.base_url)
        db = tmp_path / "memory.db"
        async with bot_process(config, nats_server.url) as bot:
            await remember_kung_fu(bridge)
            await bridge.chat("bob", "cynthia remember that my cat is called Rex")
            await bridge.wait_for_commands(2, timeout=20)
            await eventually(lambda: len(bot.events("memory_stored")) == 2)
            asked = len(model.completions)
            await bridge.chat("alice", "Cynthia, forget me!")
            commands = await bridge.wait_for_commands(3, timeout=20)
            # Confirmed only once the delete is committed: the file already shows it.
            assert commands[2].body["args"]["message"] == FORGOTTEN
            assert stored(db) == [("bob", "bob", "my cat is called Rex")]
            assert len(model.completions) == asked
            await bridge.chat("alice", "cynthia, what do you know about me?")
            await bridge.wait_for_commands(4, timeout=20)
    assert "kung fu" not in user_turns(model.completions[-1].json)


async def test_the_operator_forgets_a_user_while_the_bot_runs(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path
) -> None:
    """``kryten-llm memory forget`` on the file: the running bot stops recalling the user."""
    async with varied_model() as model:
        config = write_config(tmp_path / "config.json", nats_server.url, model.base_url)
        db = tmp_path / "memory.db"
        async with bot_process(config, nats_server.url) as bot:
            await remember_kung_fu(bridge)
            await eventually(lambda: stored(db) != [])
            listed = await memory_cli("list", "ALICE", "--db", str(db))
            assert listed.returncode == 0, listed.stderr
            assert KUNG_FU in listed.stdout
            forgot = await memory_cli("forget", "alice", "--db", str(db))
            assert forgot.returncode == 0, forgot.stderr
            assert "deleted 1 notes" in forgot.stdout
            # Reading (list) is no change; the forget is: the bot reloads with alice's note gone.
            await eventually(lambda: [e["notes"] for e in bot.events("memory_reloaded")] == [0])
            await bridge.chat("alice", "cynthia, any film for me?")
            await bridge.wait_for_commands(2, timeout=20)
    assert stored(db) == []
    # Only the notes are gone (alice's line is still in the recent chat, as any line is).
    assert RECALL_HEADER in user_turns(model.completions[0].json)
    assert RECALL_HEADER not in user_turns(model.completions[-1].json)
