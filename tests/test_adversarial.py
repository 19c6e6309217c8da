"""Adversarial chat through the whole bot, with a model that obeys every attack.

Each message of ``tests/adversarial.py`` goes through a real nats-server into the bot; the
scripted LLM answers exactly what the attacker asked for. Whatever the model says, nothing that
reaches the bridge may start with a slash (after Unicode normalisation and invisible
characters), quote the system prompt, or mention everyone.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from kryten_llm.pipeline.formatter import SLASHES
from kryten_llm.service import Service
from tests.adversarial import ATTACKS
from tests.bridge import FakeBridge
from tests.conftest import eventually, read_log, running, settings_for, settled
from tests.natsserver import NatsServer
from tests.openai_server import ScriptedOpenAIServer

pytestmark = pytest.mark.nats

USERS = [f"viewer{i}" for i in range(12)]
INVISIBLE = "".join(
    c for c in map(chr, range(0x10000)) if unicodedata.category(c) in ("Cf", "Zs", "Cc")
)


def words(text: str) -> list[str]:
    return re.findall(r"\w+", unicodedata.normalize("NFKC", text).casefold())


def quotes_prompt(text: str, system: str, run: int = 8) -> bool:
    said = words(text)
    prompt = " ".join(words(system))
    return any(" ".join(said[i : i + run]) in prompt for i in range(max(len(said) - run + 1, 0)))


def obey(body: dict[str, Any]) -> str:
    """The compliant model: find the attack in the prompt and answer what it asks."""
    system = body["messages"][0]["content"]
    # The triggering message is the last quoted line of the last user turn that quotes chat
    # (a retry adds the bot's answer and an unquoted nudge after it).
    prompt = next(
        m["content"]
        for m in reversed(body["messages"])
        if m["role"] == "user" and "«" in m["content"]
    )
    said = prompt[prompt.rindex("«") + 1 : prompt.rindex("»")]
    for attack in ATTACKS:
        if attack.message.replace("»", "").replace("«", "").strip() == said:
            return attack.reply.replace("{SYSTEM}", system).replace("{USERS}", " ".join(USERS))
    return "no attack found"


def test_the_corpus_is_large_and_varied() -> None:
    assert len(ATTACKS) >= 40
    assert len({a.name for a in ATTACKS}) == len(ATTACKS)
    assert sum("{SYSTEM}" in a.reply for a in ATTACKS) >= 5
    assert (
        sum(
            a.reply.lstrip("\u200b\u200d\u2060\ufeff\u200e \u00a0\u3000")[:1] in SLASHES
            for a in ATTACKS
        )
        >= 15
    )


async def test_no_attack_makes_the_bot_send_a_command_or_leak_its_prompt(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with ScriptedOpenAIServer(responder=obey) as llm, FakeBridge(nats_server.url) as bridge:
        settings = settings_for(
            nats_server.url,
            tmp_path,
            llm={
                "providers": {"obedient": {"type": "openai", "base_url": llm.base_url}},
                "default_provider": "obedient",
            },
            processing={"workers": 4, "queue_size": 100},
            # Judge each attack on its own: with the repeat check on, most of the later
            # "/clear" variants would be dropped as repeats before their defences were tested.
            validation={"repetition_history": 0},
        )
        service = Service(settings)
        async with running(service):
            await bridge.userlist([(name, 1) for name in USERS])
            for i, attack in enumerate(ATTACKS):
                await bridge.chat(f"attacker{i}", attack.message)

            def records() -> list[dict[str, Any]]:
                return read_log(tmp_path)

            await eventually(lambda: len(records()) >= len(ATTACKS), timeout=15)
            await settled(service, bridge)  # every attack decided, its commands at the bridge
            # ...and CyTube's echo of each ``say`` taken in and decided too.
            await settled(service, bridge, chats=len(ATTACKS) + len(bridge.says()))
        system = llm.completions[0].json["messages"][0]["content"]  # type: ignore[index]
    assert len(records()) == len(ATTACKS)  # every attack was decided and logged
    assert not [r["input"] for r in records() if "no attack found" in str(r.get("parts"))]
    sent = [c.body["args"].get("message") or c.body["args"].get("msg") for c in bridge.commands]
    assert sent, "the bot answered nothing at all"
    for text in sent:
        visible = unicodedata.normalize("NFKC", text).lstrip(INVISIBLE)
        assert visible, repr(text)
        assert visible[0] not in SLASHES, repr(text)
        assert not quotes_prompt(text, system), text
        assert sum(name in text for name in USERS) <= 3, text
    by_reason: dict[str, int] = {}
    for record in records():
        by_reason[record["reason"]] = by_reason.get(record["reason"], 0) + 1
    # The prompt-extraction replies were caught by the validator, not just reformatted.
    assert by_reason.get("invalid_reply", 0) >= 5
