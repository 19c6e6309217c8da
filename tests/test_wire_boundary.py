"""Nothing a channel sends can mute the bot: each tester's reproduction, at the parse boundary
and end to end through a real nats-server and the running service."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from kryten_llm.bus.events import (
    ChatEvent,
    CooldownEvent,
    CurrentEvent,
    RankEvent,
    parse_event,
)
from kryten_llm.bus.sender import ChatSender
from kryten_llm.config import ChannelConfig, SendConfig
from kryten_llm.errors import MalformedEvent
from kryten_llm.pipeline.state import MAX_USERS
from kryten_llm.service import Service
from tests.bridge import Escapes, FakeBridge
from tests.conftest import eventually, read_log, running, settings_for
from tests.fuzzwire import NOW_MS, chat_payload, raw_envelope
from tests.natsserver import NatsServer

SUBJECT = "kryten.events.cytube.mychannel.x"


def parse(event_name: str, payload: str) -> Any:
    return parse_event(SUBJECT, raw_envelope(event_name, payload))


# --- lone surrogates ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "escaped", [r"\ud800", r"\udfff", r"\udc00\ud800", r"x\ud800y\ud800"], ids=repr
)
def test_lone_surrogates_become_replacement_characters(escaped: str) -> None:
    """A JSON escape of a lone surrogate gives text that encodes as UTF-8."""
    event = parse("chatMsg", f'{{"username": "al\\ud800", "msg": "cynthia hi {escaped}"}}')
    assert isinstance(event, ChatEvent)
    for value in (event.text, event.raw, event.username):
        value.encode("utf-8")  # raises on a surrogate
    assert "\ufffd" in event.text
    assert event.text.startswith("cynthia hi ")


def test_a_surrogate_pair_is_kept_as_the_character_it_encodes() -> None:
    event = parse("chatMsg", chat_payload("\U0001f600 ok"))
    assert isinstance(event, ChatEvent)
    assert event.text == "\U0001f600 ok"


# --- numbers: times, media, ranks, uids, cooldowns ------------------------------------------


@pytest.mark.parametrize(
    ("event_name", "payload"),
    [
        pytest.param("chatMsg", chat_payload("cynthia hi", "1e17"), id="time-1e17"),
        pytest.param("chatMsg", chat_payload("cynthia hi", "1e400"), id="time-1e400"),
        pytest.param("chatMsg", chat_payload("cynthia hi", "NaN"), id="time-NaN"),
        pytest.param("chatMsg", chat_payload("cynthia hi", "-5"), id="time-negative"),
        pytest.param("pm", chat_payload("hi", "9" * 400), id="time-400-digits"),
        pytest.param("changeMedia", '{"title": "t", "currentTime": 1e400}', id="media-1e400"),
        pytest.param("changeMedia", '{"title": "t", "seconds": Infinity}', id="seconds-inf"),
        pytest.param("changeMedia", '{"title": "t", "seconds": NaN}', id="seconds-NaN"),
        pytest.param("changeMedia", '{"title": "t", "id": ' + "7" * 400 + "}", id="huge-id"),
        pytest.param("mediaUpdate", '{"currentTime": Infinity}', id="update-inf"),
        pytest.param("mediaUpdate", '{"currentTime": -Infinity}', id="update-minus-inf"),
        pytest.param("mediaUpdate", '{"currentTime": NaN}', id="update-NaN"),
        pytest.param("setCurrent", "1e400", id="uid-inf"),
        pytest.param("setCurrent", "NaN", id="uid-NaN"),
        pytest.param("setCurrent", "1" + "0" * 400, id="uid-huge-int"),
        pytest.param("setUserRank", '{"name": "bob", "rank": ' + "9" * 400 + "}", id="rank-huge"),
        pytest.param("setUserRank", '{"name": "bob", "rank": NaN}', id="rank-NaN"),
        pytest.param("addUser", '{"name": "bob", "rank": 1e400}', id="join-rank-inf"),
        pytest.param("userlist", '[{"name": "bob", "rank": -Infinity}]', id="list-rank-inf"),
        pytest.param("cooldown", "NaN", id="cooldown-NaN"),
        pytest.param("cooldown", "-Infinity", id="cooldown-minus-inf"),
    ],
)
def test_numbers_out_of_range_are_malformed(event_name: str, payload: str) -> None:
    """Non-finite, huge or impossible numbers are refused once, at the parse boundary."""
    with pytest.raises(MalformedEvent) as caught:
        parse(event_name, payload)
    assert caught.value.subject == SUBJECT


def test_numbers_in_range_still_parse() -> None:
    current = parse("setCurrent", "42")
    assert isinstance(current, CurrentEvent)
    assert current.uid == 42
    rank = parse("setUserRank", '{"name": "bob", "rank": 1.5}')
    assert isinstance(rank, RankEvent)
    assert rank.rank == 1.5
    chat = parse("chatMsg", chat_payload("hi", str(NOW_MS)))
    assert chat.time_ms == NOW_MS
    assert parse("mediaUpdate", '{"currentTime": -3}').current_time == -3.0


@pytest.mark.parametrize(
    ("payload", "milliseconds"),
    [
        pytest.param("4000", 4000.0, id="4s"),
        pytest.param("60000", 60000.0, id="60s"),
        pytest.param("1e12", 60000.0, id="1e12-capped"),
        pytest.param("Infinity", 60000.0, id="infinity-capped"),
        pytest.param("1e400", 60000.0, id="1e400-capped"),
        pytest.param("1" + "0" * 400, 60000.0, id="huge-int-capped"),
    ],
)
def test_a_cooldown_is_capped_at_60_seconds(payload: str, milliseconds: float) -> None:
    event = parse("cooldown", payload)
    assert isinstance(event, CooldownEvent)
    assert event.milliseconds == milliseconds


# --- depth and size -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(raw_envelope("chatMsg", "[" * 100_000 + "]" * 100_000), id="deep-list"),
        pytest.param(raw_envelope("other", '{"a":' * 50_000 + "1" + "}" * 50_000), id="deep-obj"),
        pytest.param(raw_envelope("other", "[" * 40 + "]" * 40), id="depth-40"),
        pytest.param(b"[" * 100_000, id="unterminated"),
        pytest.param(raw_envelope("chatMsg", chat_payload("x" * 30_000)), id="huge-msg"),
        pytest.param(raw_envelope("other", '"' + "x" * 3_000_000 + '"'), id="huge-body"),
        pytest.param(b'{"event_name": "\xed\xa0\x80"}', id="raw-surrogate-bytes"),
        pytest.param(b"1" * 5000, id="int-digit-limit"),
    ],
)
def test_deep_huge_or_broken_bodies_are_malformed(data: bytes) -> None:
    """``parse_event`` raises nothing but MalformedEvent, RecursionError included."""
    with pytest.raises(MalformedEvent):
        parse_event(SUBJECT, data)


# --- the sender -----------------------------------------------------------------------------

CHANNEL = ChannelConfig(domain="cytu.be", channel="MyChannel")


class FakeNats:
    """Records the clock at each publish."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.published: list[float] = []

    async def publish(self, subject: str, data: bytes) -> None:
        self.published.append(self.clock.now)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []
        self.during_first_sleep: Any = None

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.during_first_sleep is not None:
            action, self.during_first_sleep = self.during_first_sleep, None
            action()
        self.now += seconds


def fake_sender() -> tuple[ChatSender, FakeClock, FakeNats]:
    clock = FakeClock()
    nc = FakeNats(clock)
    config = SendConfig(min_gap_seconds=0, jitter_seconds=0)
    sender = ChatSender(nc, config, clock=clock, jitter=lambda: 0.0, sleep=clock.sleep)  # type: ignore[arg-type]
    return sender, clock, nc


async def test_a_cooldown_arriving_during_a_wait_is_waited_for_too() -> None:
    """A send waiting out a 1 s cooldown when a 4 s one arrives goes out after the 4 s."""
    sender, clock, nc = fake_sender()
    sender.on_cooldown(CHANNEL, 1000)
    clock.during_first_sleep = lambda: sender.on_cooldown(CHANNEL, 4000)
    await sender.say(CHANNEL, "hello")
    assert nc.published == [104.0]
    assert clock.sleeps == [1.0, 3.0]


@pytest.mark.parametrize(
    ("milliseconds", "wait"),
    [
        pytest.param(float("inf"), 60.0, id="inf"),
        pytest.param(1e12, 60.0, id="1e12"),
        pytest.param(float("nan"), 0.0, id="nan-ignored"),
        pytest.param(-5000.0, 0.0, id="negative-ignored"),
        pytest.param(2500.0, 2.5, id="2.5s"),
    ],
)
async def test_the_sender_never_waits_longer_than_60_seconds(
    milliseconds: float, wait: float
) -> None:
    """Even when a caller skips the parse boundary, a cooldown mutes the channel 60 s at most."""
    sender, _clock, nc = fake_sender()
    sender.on_cooldown(CHANNEL, milliseconds)
    await sender.say(CHANNEL, "hello")
    assert nc.published == [100.0 + wait]


# --- end to end: a real nats-server, the bridge stand-in, the running service ---------------


def start(nats_server: NatsServer, tmp_path: Path, **sections: Any) -> Service:
    return Service(settings_for(nats_server.url, tmp_path, **sections))


@pytest.mark.nats
async def test_surrogate_mentions_are_answered_and_the_bot_keeps_answering(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path
) -> None:
    """Two mentions ending in a lone surrogate (one per reply worker) are answered, logged,
    and a normal mention after them is answered too."""
    service = start(nats_server, tmp_path)
    async with running(service):
        with Escapes() as escapes:
            await bridge.chat("alice", "cynthia hi \ud800")
            await bridge.chat("bob", "cynthia, \udfff what now")
            await bridge.chat("carol", "cynthia, still there?")
            await bridge.wait_for_commands(3)
            escapes.check(service.settings.processing.workers)
    assert any("still there?" in text for text in bridge.says())
    records = read_log(tmp_path)
    assert [r["answered"] for r in records] == [True, True, True]
    assert "\ufffd" in records[0]["input"]


@pytest.mark.nats
async def test_mentions_with_impossible_times_are_dropped_and_the_bot_keeps_answering(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path
) -> None:
    service = start(nats_server, tmp_path)
    async with running(service):
        with Escapes() as escapes:
            await bridge.chat("alice", "cynthia hi", time_ms=10**17)
            await bridge.publish_raw(
                "chatmsg", raw_envelope("chatMsg", chat_payload("cynthia yo", "1e400", "bob"))
            )
            await bridge.publish_raw(
                "chatmsg", raw_envelope("chatMsg", chat_payload("cynthia ey", "1e17", "eve"))
            )
            await bridge.chat("carol", "cynthia, still there?")
            await bridge.wait_for_commands(1)
            await eventually(lambda: service.stats["events_malformed"] == 3)
            escapes.check(service.settings.processing.workers)
            assert len(escapes.events("event_malformed")) == 3
    assert [r["input"] for r in read_log(tmp_path)] == ["cynthia, still there?"]


@pytest.mark.nats
@pytest.mark.parametrize(
    "media",
    [
        pytest.param(
            [("changeMedia", '{"id": "x", "title": "Live", "seconds": 0, "currentTime": 1e400}')],
            id="changeMedia-1e400",
        ),
        pytest.param(
            [
                ("changeMedia", '{"id": "x", "title": "Live", "seconds": 0, "currentTime": 0}'),
                ("mediaUpdate", '{"currentTime": Infinity, "paused": false}'),
            ],
            id="mediaUpdate-Infinity",
        ),
    ],
)
async def test_non_finite_media_positions_do_not_break_the_prompt(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path, media: list[tuple[str, str]]
) -> None:
    """A non-finite position is dropped at the boundary; the next mention is answered."""
    service = start(nats_server, tmp_path)
    async with running(service):
        with Escapes() as escapes:
            for name, payload in media:
                await bridge.publish_raw(name.lower(), raw_envelope(name, payload))
            await eventually(lambda: service.stats["events"] == len(media))
            await bridge.chat("alice", "cynthia, what is on?")
            await bridge.wait_for_commands(1)
            assert service.stats["events_malformed"] == 1
            escapes.check(service.settings.processing.workers)
    (record,) = read_log(tmp_path)
    assert record["answered"] is True


CALLBACK_BREAKERS = [
    ("chatmsg", raw_envelope("chatMsg", "[" * 100_000 + "]" * 100_000)),
    ("other", b'{"a":' * 5_000 + b"1" + b"}" * 5_000),
    ("setcurrent", raw_envelope("setCurrent", "1e400")),
    ("setcurrent", raw_envelope("setCurrent", "NaN")),
    ("setuserrank", raw_envelope("setUserRank", '{"name": "bob", "rank": ' + "9" * 400 + "}")),
    ("adduser", raw_envelope("addUser", '{"name": "bob", "rank": 1e400}')),
    ("chatmsg", raw_envelope("chatMsg", chat_payload("cynthia hi", "Infinity"))),
]


@pytest.mark.nats
async def test_nothing_reaches_the_nats_error_callback(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path
) -> None:
    """Payloads that used to raise inside the NATS callback are counted as malformed."""
    service = start(nats_server, tmp_path)
    async with running(service):
        with Escapes() as escapes:
            for token, data in CALLBACK_BREAKERS:
                await bridge.publish_raw(token, data)
            await bridge.chat("alice", "cynthia, still there?")
            await bridge.wait_for_commands(1)
            await eventually(lambda: service.stats["events"] == len(CALLBACK_BREAKERS) + 1)
            assert service.stats["events_malformed"] == len(CALLBACK_BREAKERS)
            malformed = escapes.events("event_malformed")
            assert len(malformed) == len(CALLBACK_BREAKERS)
            assert all("exc_info" not in entry for entry in malformed)  # one line, no traceback
            escapes.check(service.settings.processing.workers)


@pytest.mark.nats
async def test_a_huge_cooldown_mutes_the_channel_60_seconds_at_most(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path
) -> None:
    service = start(nats_server, tmp_path)
    async with running(service):
        with Escapes() as escapes:
            await bridge.publish("cooldown", 1e12)
            await bridge.publish("cooldown", float("inf"))
            await bridge.publish("cooldown", float("nan"))
            await eventually(lambda: service.stats["events"] == 3)
            backoffs = [entry["seconds"] for entry in escapes.events("send_backoff")]
            assert backoffs == [60.0, 60.0]
            assert service.stats["events_malformed"] == 1  # NaN: ignored
            escapes.check(service.settings.processing.workers)


@pytest.mark.nats
async def test_a_cooldown_arriving_while_a_reply_waits_delays_it(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path
) -> None:
    """With the real sender: a reply waiting out a 1 s cooldown when a 2 s one arrives goes
    out no sooner than 2 s after the second cooldown."""
    service = start(nats_server, tmp_path)
    async with running(service):
        await bridge.publish("cooldown", 1000)
        await eventually(lambda: service.stats["event_type:cooldown"] == 1)
        await bridge.chat("alice", "cynthia, hello?")
        assert service.bot is not None
        responder = service.bot
        await eventually(lambda: responder.in_flight == 1)
        await asyncio.sleep(0.3)  # the reply is now waiting in the sender
        second = time.monotonic()
        await bridge.publish("cooldown", 2000)
        (command,) = await bridge.wait_for_commands(1, timeout=5)
    assert command.received_at - second >= 1.9


@pytest.mark.nats
async def test_a_flood_of_joins_keeps_the_user_table_bounded(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path
) -> None:
    service = start(nats_server, tmp_path)
    count = MAX_USERS + 2_000
    assert bridge.client._nats is not None
    nc = bridge.client._nats
    async with running(service):
        for i in range(count):
            body = raw_envelope("addUser", f'{{"name": "user{i}", "rank": 0, "meta": {{}}}}')
            await nc.publish("kryten.events.cytube.mychannel.adduser", body)
        await bridge.chat("alice", "cynthia, how many here?")
        await bridge.wait_for_commands(1)
        await eventually(lambda: service.stats["events"] == count + 1)
        assert service.bot is not None
        (context,) = service.bot.channels.values()
        assert len(context.state.users) == MAX_USERS
        assert context.state.users_dropped == 2_000
