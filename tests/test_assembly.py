"""One assembly: the live bot and ``batch --pipeline`` put the reply path together the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from kryten_llm.batch.api import run_batch
from kryten_llm.bot.assembly import Bot
from kryten_llm.bot.responselog import ResponseLog
from kryten_llm.config import Settings
from kryten_llm.llm import build_manager
from kryten_llm.pipeline.decisions import TriggerMatch
from kryten_llm.service import Service
from tests.bridge import FakeBridge
from tests.conftest import running, settings_for
from tests.natsserver import NatsServer
from tests.openai_server import ScriptedOpenAIServer, reply

TEMPLATE = (
    "{user} asked {where} of {channel} ({users_present} here, trigger {trigger}):\n"
    "{message}{context}\nAnswer as {bot}, briefly."
)
QUESTION = "cynthia, " + "is Plan 9 really the worst film ever made? " * 12


def _settings(nats_url: str, tmp: Path, llm_url: str) -> Settings:
    return settings_for(
        nats_url,
        tmp / "logs",
        llm={
            "default_provider": "main",
            "providers": {"main": {"type": "openai", "base_url": llm_url, "model": "m"}},
        },
        prompts={"templates": {"mention": TEMPLATE}, "budget": 300, "budget_unit": "chars"},
    )


async def test_the_live_bot_and_batch_pipeline_send_the_identical_prompt(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path
) -> None:
    """Same config, same message: the provider receives byte-for-byte the same messages."""
    async with ScriptedOpenAIServer(default=reply("It is a classic of its kind.")) as llm:
        settings = _settings(nats_server.url, tmp_path, llm.base_url)
        async with running(Service(settings)):
            await bridge.chat("bob", QUESTION)
            await bridge.wait_for_commands(1)
        live: Any = llm.completions[-1].json
        result = await run_batch(
            [{"username": "bob", "message": QUESTION}],
            settings=settings,
            pipeline=True,
            db=str(tmp_path / "b.db"),
            no_log=True,
        )
        batch: Any = llm.completions[-1].json
    assert result.completed == 1
    assert len(llm.completions) == 2
    assert batch["messages"] == live["messages"]
    # The per-trigger template and the budget were applied (batch once ignored both).
    user_turn = live["messages"][-1]["content"]
    assert user_turn.startswith("bob asked in the channel chat of MyChannel")
    assert "trigger mention" in user_turn
    assert user_turn.rstrip().endswith("Answer as CynthiaRothbot, briefly.")


async def test_new_settings_rebuild_the_character_and_keep_the_state(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """apply() speaks as the new personality; history, limits and recent replies are kept."""
    settings = settings_for(
        "nats://127.0.0.1:1",
        tmp_path,
        personalities={
            "cynthia": {"character_name": "CynthiaRothbot"},
            "critic": {"character_name": "Roger", "name_variations": ["roger"]},
        },
        active_personality="cynthia",
        ratelimit={"global_cooldown_seconds": 60},
    )
    bot = Bot(settings, sender=None, response_log=ResponseLog(tmp_path))
    (context,) = bot.channels.values()
    assert context.character.reply is None  # listening only
    bot.start_answering(build_manager(settings.llm, session))
    before = context.character
    assert before.reply is not None
    context.state.add_chat("alice", "hello", 0)
    await before.limiter.acquire(username="alice", rank=0, trigger=TriggerMatch("mention", "m"))
    bot.apply(settings.model_copy(update={"active_personality": "critic"}))
    after = context.character
    assert after is not before
    assert after.reply is not None
    assert after.reply.prompts.system.startswith("You are Roger,")
    assert after.triggers.is_mention("roger, hi")
    assert not before.triggers.is_mention("roger, hi")
    assert before.reply.prompts.system.startswith("You are CynthiaRothbot,")  # in-flight keep it
    assert after.limiter is before.limiter  # the windows counted so far still count
    refused = await after.limiter.acquire(
        username="alice", rank=0, trigger=TriggerMatch("mention", "m")
    )
    assert refused.limit == "global_cooldown"
    assert [line.text for line in context.state.recent(5)] == ["hello"]
    assert settings.active_personality == "cynthia"  # the given settings are never changed
