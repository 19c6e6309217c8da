"""The whole path under fuzzed input: hostile envelopes through a real nats-server into the
running service, which must count every one, let nothing escape, and still answer a mention."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kryten_llm.bus.events import parse_event
from kryten_llm.errors import MalformedEvent
from kryten_llm.service import Service
from tests.bridge import Escapes, FakeBridge
from tests.conftest import eventually, running, settings_for
from tests.fuzzwire import envelopes, messages
from tests.natsserver import NatsServer


def _strings(value: object) -> Iterator[str]:
    """Every string an event holds: its fields, its envelope's, nested users and media."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, msgspec.Struct):  # the event records
        for name in value.__struct_fields__:
            if name != "payload":  # OtherEvent keeps the raw payload, uninterpreted
                yield from _strings(getattr(value, name))
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from _strings(getattr(value, field.name))
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _strings(item)


@given(data=envelopes() | st.binary(max_size=300))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_parse_event_raises_only_malformed_event(data: bytes) -> None:
    """Whatever the bytes: a typed event whose strings encode as UTF-8, or MalformedEvent."""
    try:
        event = parse_event("kryten.events.cytube.mychannel.x", data)
    except MalformedEvent:
        return
    for text in _strings(event):
        text.encode("utf-8")  # raises on a lone surrogate


@pytest.mark.nats
@given(batch=st.lists(messages, min_size=10, max_size=80))
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
def test_fuzzed_traffic_never_mutes_the_bot(
    nats_server: NatsServer, tmp_path: Path, batch: list[tuple[str, bytes]]
) -> None:
    """Every payload is counted (parsed or malformed), no exception escapes (no
    ``event_handling_failed``, ``reply_failed``, ``nats_error``, no dead worker), and a normal
    mention afterwards is answered."""

    async def scenario() -> None:
        # No echo: then the bot's event counter is exactly what we published.
        async with FakeBridge(nats_server.url, echo=False) as bridge:
            service = Service(settings_for(nats_server.url, tmp_path, spam={"enabled": False}))
            async with running(service):
                with Escapes() as escapes:
                    for token, data in batch:
                        await bridge.publish_raw(token, data)
                    await eventually(lambda: service.stats["events"] == len(batch), 20)
                    # A well-formed `cooldown` in the batch holds sending as CyTube asked (at
                    # most 60 s, longer than a reply's deadline): "never muted" means answered
                    # once that hold is over.
                    await eventually(lambda: not any(_holds(service).values()), 65)
                    await bridge.chat("zed", "cynthia, are you still with us?")
                    await eventually(lambda: service.stats["events"] == len(batch) + 1, 20)
                    await eventually(
                        lambda: any("still with us" in text for text in bridge.says()), 20
                    )
                    stats = service.stats.snapshot()
                    typed = sum(v for k, v in stats.items() if k.startswith("event_type:"))
                    assert stats.get("events_malformed", 0) + typed == len(batch) + 1
                    escapes.check(service.settings.processing.workers)

    asyncio.run(scenario())


def _holds(service: Service) -> dict[str, float]:
    """Seconds each channel's sending is still held by a cooldown or noflood."""
    live = service.liveness()
    return dict(live.send_paused_seconds) if live is not None else {}
