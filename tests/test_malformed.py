"""Bad input on the event subjects is logged and dropped; the service keeps answering."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kryten_llm.bus.events import ChatEvent, parse_event
from kryten_llm.errors import MalformedEvent
from kryten_llm.service import Service
from tests.bridge import FakeBridge
from tests.conftest import running, settings_for
from tests.fuzzwire import EVENT_NAMES as FUZZ_EVENT_NAMES
from tests.natsserver import NatsServer

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
EVENT_NAMES = [*FUZZ_EVENT_NAMES, "other"]
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "event_name": st.sampled_from(EVENT_NAMES) | json_values,
        "payload": json_values,
        "channel": st.just("MyChannel") | json_values,
        "domain": st.just("cytu.be") | json_values,
        "timestamp": st.text(max_size=10) | json_values,
        "correlation_id": st.text(max_size=10) | json_values,
    },
)


@given(data=st.binary(max_size=200) | envelopes.map(lambda e: json.dumps(e).encode()))
@settings(max_examples=500, deadline=None)
def test_parse_event_either_parses_or_raises_malformed(data: bytes) -> None:
    """Any bytes give a typed event or MalformedEvent, never another exception."""
    subject = "kryten.events.cytube.mychannel.x"
    try:
        event = parse_event(subject, data)
    except MalformedEvent as exc:
        failure: MalformedEvent | None = exc
    else:
        failure = None
        assert isinstance(event.envelope.channel, str)
    if failure is not None:
        assert failure.subject == subject
        assert failure.reason


@pytest.mark.nats
@given(
    batch=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "chatmsg",
                    "pm",
                    "userlist",
                    "adduser",
                    "changemedia",
                    "setcurrent",
                    "cooldown",
                    "setuserrank",
                    "weird",
                ]
            ),
            st.binary(max_size=120) | envelopes.map(lambda e: json.dumps(e).encode()),
        ),
        min_size=1,
        max_size=40,
    )
)
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_a_stream_of_malformed_payloads_never_kills_the_service(
    nats_server: NatsServer, tmp_path: Path, batch: list[tuple[str, bytes]]
) -> None:
    """After any stream of garbage on its subjects the bot still answers a mention."""

    async def scenario() -> None:
        async with FakeBridge(nats_server.url) as bridge:
            service = Service(settings_for(nats_server.url, tmp_path))
            async with running(service):
                for token, data in batch:
                    await bridge.publish_raw(token, data)
                await bridge.chat("alice", "cynthia, still alive?")
                await bridge.wait_for_commands(1)
                assert service.stats["events"] >= len(batch)
                assert service.stats["events_failed"] == 0

    asyncio.run(scenario())


def test_chat_html_is_decoded_and_links_unwrapped() -> None:
    """``msg`` is HTML: entities are decoded and tags dropped for the text the LLM sees."""
    body = {
        "event_name": "chatMsg",
        "payload": {
            "username": "alice",
            "msg": 'see <a href="https://x.example/a?b=1&amp;c=2" target="_blank">'
            "https://x.example/a?b=1&amp;c=2</a> &#40;it&#39;s &lt;good&gt;&#41;",
            "meta": {"addClass": "action"},
            "time": int(time.time() * 1000),
        },
        "channel": "MyChannel",
        "domain": "cytu.be",
        "timestamp": "2026-11-22T08:12:29.577351+00:00",
        "correlation_id": "834cb648-0646-40e5-bda6-bb207a3c6108",
    }
    event = parse_event("s", json.dumps(body).encode())
    assert isinstance(event, ChatEvent)
    assert event.text == "see https://x.example/a?b=1&c=2 (it's <good>)"
    assert event.css_class == "action"
    assert event.envelope.correlation_id == "834cb648-0646-40e5-bda6-bb207a3c6108"
