"""Streamed replies end to end: a real nats-server, kryten-py as the bridge, the real service,
and a scripted OpenAI-compatible server that streams its answer with pauses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kryten_llm.service import Service
from tests.bridge import FakeBridge
from tests.conftest import eventually, read_log, running, settings_for, settled
from tests.natsserver import NatsServer
from tests.openai_server import ScriptedOpenAIServer, reply, streamed

pytestmark = pytest.mark.nats

FIRST = "Plan 9 is a classic. "
REST = "Ed Wood made it with love, cardboard and hubcaps, and nobody has matched it since."


def chain(*servers: ScriptedOpenAIServer, **provider: Any) -> dict[str, Any]:
    """The ``llm`` section: one provider per scripted server, asked in order."""
    names = [f"api{i}" for i in range(len(servers))]
    return {
        "providers": {
            name: {"type": "openai", "base_url": server.base_url, **provider}
            for name, server in zip(names, servers, strict=True)
        },
        "default_provider": names[0],
        "fallback": names[1:],
    }


async def test_the_first_part_reaches_the_bridge_before_the_model_has_finished(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path
) -> None:
    """The model streams its first sentence, then thinks for 3 s: that sentence is already on
    kryten.robot.command while the model is still writing; the rest follows as a second part."""
    async with ScriptedOpenAIServer(streamed(FIRST, 3.0, REST)) as llm:
        settings = settings_for(nats_server.url, tmp_path, llm=chain(llm))
        async with running(Service(settings)) as service:
            await bridge.chat("alice", "cynthia, is plan 9 any good?")
            (first,) = await bridge.wait_for_commands(1)
            assert llm.stream_ends == []  # the model has not finished its answer
            await bridge.wait_for_commands(2)
            await settled(service, bridge, chats=3)  # the mention and the echoes of two parts
    assert llm.completions[0].json is not None
    assert llm.completions[0].json["stream"] is True
    (finished,) = llm.stream_ends
    assert first.received_at < finished
    assert bridge.says() == ["Plan 9 is a classic.", REST]
    (record,) = read_log(tmp_path)
    assert record["reason"] == "answered"
    assert record["streamed"] is True
    assert record["parts"] == bridge.says()
    assert record["first_part_ms"] < record["last_part_ms"]
    assert record["last_part_ms"] - record["first_part_ms"] >= 2900  # the model's pause
    assert record["last_part_ms"] <= record["total_ms"]
    assert "interrupted" not in record


async def test_a_failure_after_the_first_part_does_not_start_the_answer_again(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path
) -> None:
    """Once a part is said, a cut stream is not retried and no other provider is asked (the
    first sentence would be said twice): the reply ends with what was said, and says why."""
    async with (
        ScriptedOpenAIServer(streamed(FIRST, "Ed Wood made", cut=True)) as primary,
        ScriptedOpenAIServer(default=reply("The backup would say this.")) as backup,
    ):
        settings = settings_for(nats_server.url, tmp_path, llm=chain(primary, backup))
        async with running(Service(settings)) as service:
            await bridge.chat("alice", "cynthia, is plan 9 any good?")
            await bridge.wait_for_commands(1)
            await settled(service, bridge, chats=2)
    assert bridge.says() == ["Plan 9 is a classic."]
    assert len(primary.completions) == 1  # no retry
    assert backup.completions == []  # no failover
    (record,) = read_log(tmp_path)
    assert record["reason"] == "answered"
    assert record["interrupted"] is True
    assert record["error_type"] == "ProviderUnavailable"
    assert record["parts"] == ["Plan 9 is a classic."]


async def test_a_failure_before_the_first_part_is_retried_from_scratch(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path
) -> None:
    """A stream cut before any sentence was finished is retried like any failure, and nothing
    of the broken attempt is said."""
    steps = (streamed("Half a sente", cut=True), streamed("A whole answer. ", "With two parts."))
    async with ScriptedOpenAIServer(*steps) as llm:
        settings = settings_for(nats_server.url, tmp_path, llm=chain(llm))
        async with running(Service(settings)) as service:
            await bridge.chat("alice", "cynthia, say something")
            await bridge.wait_for_commands(2)
            await settled(service, bridge, chats=3)
    assert len(llm.completions) == 2
    assert bridge.says() == ["A whole answer.", "With two parts."]
    (record,) = read_log(tmp_path)
    assert record["reason"] == "answered"
    assert record["fallback_from"] == []


async def test_a_refused_first_part_is_never_sent_and_gets_the_corrective_retry(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path
) -> None:
    """The validator judges the first part before it goes out: a blocklisted first sentence
    stops the stream, and the retry's answer is what the channel sees."""
    steps = (
        streamed("This is forbidden talk. ", 3.0, "And more of it."),
        streamed("A clean answer. ", "Nothing to see here."),
    )
    async with ScriptedOpenAIServer(*steps) as llm:
        settings = settings_for(
            nats_server.url, tmp_path, llm=chain(llm), validation={"blocklist": ["forbidden"]}
        )
        async with running(Service(settings)) as service:
            await bridge.chat("alice", "cynthia, say something")
            await bridge.wait_for_commands(2)
            await settled(service, bridge, chats=3)
            # The first stream was closed in its 3 s pause, once its first part was refused.
            await eventually(lambda: llm.stream_left, 2.0)
    assert bridge.says() == ["A clean answer.", "Nothing to see here."]
    (left,) = llm.stream_left
    assert left - llm.completions[0].received_at < 2.0
    assert len(llm.stream_ends) == 1
    (record,) = read_log(tmp_path)
    assert record["first_attempt"]["rejected"] == "blocklisted"
    assert record["first_attempt"]["text"] == "This is forbidden talk. "
    assert record["reason"] == "answered"


async def test_a_refused_later_part_ends_the_reply_before_it(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path
) -> None:
    """After the first part is said, a later part that fails a check is not sent, and the
    reply ends there (it cannot be asked again without repeating the first part)."""
    long_secret = "Then the secret plan comes out, " + "word " * 60 + "and so on."
    async with ScriptedOpenAIServer(streamed(FIRST, long_secret, " The end.")) as llm:
        settings = settings_for(
            nats_server.url, tmp_path, llm=chain(llm), validation={"blocklist": ["secret"]}
        )
        async with running(Service(settings)) as service:
            await bridge.chat("alice", "cynthia, say something")
            await bridge.wait_for_commands(1)
            await settled(service, bridge, chats=2)
    assert bridge.says() == ["Plan 9 is a classic."]
    (record,) = read_log(tmp_path)
    assert record["reason"] == "answered"
    assert record["check"] == "blocklisted"
    assert record["parts"] == ["Plan 9 is a classic."]
    assert "secret" in record["rejected_parts"][0]


@pytest.mark.parametrize(
    "sections",
    [
        pytest.param({"streaming": {"enabled": False}}, id="streaming.enabled=false"),
        pytest.param({"provider": {"stream": False}}, id="provider stream=false"),
    ],
)
async def test_with_streaming_off_the_answer_is_asked_whole_and_sent_whole(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path, sections: dict[str, Any]
) -> None:
    """Either switch makes the provider ask with ``stream: false``; the reply is cut from the
    whole answer (one part, as it fits)."""
    provider = sections.pop("provider", {})
    async with ScriptedOpenAIServer(reply(FIRST + "Short.")) as llm:
        settings = settings_for(nats_server.url, tmp_path, llm=chain(llm, **provider), **sections)
        async with running(Service(settings)) as service:
            await bridge.chat("alice", "cynthia, say something")
            await bridge.wait_for_commands(1)
            await settled(service, bridge, chats=2)
    assert llm.completions[0].json is not None
    assert llm.completions[0].json["stream"] is False
    assert bridge.says() == ["Plan 9 is a classic. Short."]
    (record,) = read_log(tmp_path)
    assert "streamed" not in record
    assert record["first_part_ms"] == record["last_part_ms"]
