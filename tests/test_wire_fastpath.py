"""The parse boundary's fast paths give exactly what the full checks give, the bot's listening
half imports nothing it does not use, and startup's pause of the garbage collector always ends
(issue "Closer to the wire")."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st
from msgspec.structs import astuple

from kryten_llm.bus import events, wire
from kryten_llm.bus.events import ChatEvent, Envelope, parse_event
from kryten_llm.cli import main
from kryten_llm.errors import MalformedEvent
from tests import fuzzwire

ROOT = Path(__file__).resolve().parent.parent
SUBJECT = "kryten.events.cytube.mychannel.chatmsg"


def _outcome(call: object, data: bytes) -> tuple[str, str]:
    """What a decoder made of ``data``: ``("ok", repr(value))`` or the error's type and text."""
    try:
        return ("ok", repr(call(data)))  # type: ignore[operator]
    except Exception as exc:
        return (type(exc).__name__, str(exc))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b'{"a": 1, "b": [true, null, "x"]}', id="bridge-shape"),
        pytest.param(b' {"a": 1}\n', id="surrounding-whitespace"),
        pytest.param(b'\xef\xbb\xbf{"a": 1}', id="utf8-bom"),
        pytest.param('{"a": "\u00e9"}'.encode("utf-16"), id="utf16"),
        pytest.param(b'{"a": "\xed\xa0\x80"}', id="encoded-surrogate"),
        pytest.param(b'{"a": "\\ud800"}', id="escaped-surrogate"),
        pytest.param(b'{"a": 1} x', id="trailing-garbage"),
        pytest.param(b'{"a": ', id="truncated"),
        pytest.param(b"", id="empty"),
        pytest.param(b"\xff\xfe\xfa", id="not-unicode"),
        pytest.param(b"1" * 5000, id="too-many-digits"),
        pytest.param(b'{"a": NaN, "b": -Infinity}', id="non-finite"),
    ],
)
def test_the_fast_decoder_returns_and_raises_what_json_loads_does(data: bytes) -> None:
    """The scanner is used for the bridge's plain UTF-8; anything else goes to json.loads."""
    assert _outcome(wire._fast_loads, data) == _outcome(json.loads, data)


def _envelope_bytes(**fields: object) -> bytes:
    body: dict[str, object] = {
        "event_name": "chatMsg",
        "payload": {"username": "alice", "msg": "hello there", "meta": {}, "time": 1_700_000_000},
        "channel": "MyChannel",
        "domain": "cytu.be",
        "timestamp": "2026-11-30T04:00:00+00:00",
        "correlation_id": "c0ffee",
    }
    body.update(fields)
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param(
            {"channel": "Caf\u00e9"},
            Envelope("chatMsg", "Caf\u00e9", "cytu.be", "2026-11-30T04:00:00+00:00", "c0ffee"),
            id="non-ascii-kept",
        ),
        pytest.param(
            {"correlation_id": "x\ud800y"},
            Envelope("chatMsg", "MyChannel", "cytu.be", "2026-11-30T04:00:00+00:00", "x\ufffdy"),
            id="lone-surrogate-replaced",
        ),
    ],
)
def test_an_envelope_off_the_fast_path_gets_the_full_checks(
    fields: dict[str, object], expected: Envelope
) -> None:
    event = parse_event(SUBJECT, _envelope_bytes(**fields))
    assert event.envelope == expected


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        pytest.param({"channel": "c" * 101}, "'channel' is longer than 100", id="long-channel"),
        pytest.param({"domain": 7}, "'domain' must be a string", id="domain-not-string"),
        pytest.param({"timestamp": None}, "'timestamp' must be a string", id="null-timestamp"),
        pytest.param(
            {"payload": {"username": "u" * 101, "msg": "hi"}},
            "'username' is longer than 100",
            id="long-username",
        ),
        pytest.param(
            {"payload": {"username": "alice", "msg": ["hi"]}},
            "'msg' must be a string",
            id="msg-not-string",
        ),
    ],
)
def test_values_the_fast_path_refuses_are_still_malformed(
    fields: dict[str, object], reason: str
) -> None:
    with pytest.raises(MalformedEvent) as caught:
        parse_event(SUBJECT, _envelope_bytes(**fields))
    assert reason in caught.value.reason


def test_a_non_ascii_chat_line_is_cleaned_like_before() -> None:
    """Username and text with a lone surrogate leave the fast path and come out repaired."""
    payload = {"username": "b\u00f6b", "msg": "caf\u00e9 \ud83c &amp; <b>tea</b>", "meta": {}}
    event = parse_event(SUBJECT, _envelope_bytes(payload=payload))
    assert isinstance(event, ChatEvent)
    assert (event.username, event.text, event.raw) == (
        "b\u00f6b",
        "caf\u00e9 \ufffd & tea",
        "caf\u00e9 \ufffd &amp; <b>tea</b>",
    )
    assert astuple(event)[4:] == (0, False, "", None)


def test_the_listening_half_imports_no_memory_operator_or_health_code() -> None:
    """Everything the bot imports before it subscribes is on the way to the subscription."""
    script = (
        "import sys, kryten_llm.service, kryten_llm.bot.assembly\n"
        "names = ('sqlite3', 'kryten_llm.memory', 'kryten_llm.bot.operator',"
        " 'kryten_llm.checks', 'kryten_llm.ops.health', 'kryten_llm.explore')\n"
        "print(sorted(n for n in names if n in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("config", "code"),
    [
        pytest.param({}, 0, id="valid"),
        pytest.param({"ratelimit": {"global_per_minute": 0}}, 2, id="config-error"),
    ],
)
def test_collection_paused_for_startup_is_always_resumed(
    tmp_path: Path, config: dict[str, object], code: int
) -> None:
    """The command line pauses the garbage collector while it loads the settings; whatever
    the outcome, collection is on again afterwards (a test process calls main() often)."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    assert gc.isenabled()
    assert main(["--config", str(path), "--validate-config"]) == code
    assert gc.isenabled()


# --- the typed chat path (msgspec) gives exactly what the general checks give ---------------


def _general(data: bytes) -> object:
    """What the general path (``json.loads`` output and the field checks) makes of ``data``."""
    try:
        return events._parse(data)
    except wire.Bad as exc:
        return ("malformed", str(exc))


def _hostile_or(plausible: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A JSON value for one key: plausible eleven times in twelve, else anything at all."""
    return st.integers(0, 11).flatmap(lambda roll: plausible if roll else fuzzwire.values)


_CHAT_KEYS = {
    "username": _hostile_or(st.sampled_from(['"alice"', '"b\\u00f6b"', '"[server]"'])),
    "msg": _hostile_or(fuzzwire.strings.map(json.dumps) | st.text().map(json.dumps)),
    "meta": _hostile_or(
        st.sampled_from(["{}", "null", '{"addClass": "action"}', '{"shadow": true, "modflair": 2}'])
    ),
    "time": _hostile_or(st.just(str(fuzzwire.NOW_MS))),
    "to": _hostile_or(st.sampled_from(['"CynthiaRothbot"', '"x"'])),
}
_ENVELOPE_KEYS = {
    "event_name": _hostile_or(st.sampled_from(['"chatMsg"', '"pm"', '"addUser"'])),
    "channel": _hostile_or(st.just('"MyChannel"')),
    "domain": _hostile_or(st.just('"cytu.be"')),
    "timestamp": _hostile_or(st.just('"2026-11-22T08:12:29.577351+00:00"')),
    "correlation_id": _hostile_or(st.just('"834cb648-0646-40e5-bda6-bb207a3c6108"')),
}


@st.composite
def chat_envelopes(draw: st.DrawFn) -> bytes:
    """Chat envelopes whose every key is plausible, hostile, missing or repeated."""

    def pairs(keys: dict[str, st.SearchStrategy[str]]) -> list[str]:
        out = []
        for key, value in keys.items():
            for _ in range(draw(st.sampled_from([1] * 18 + [0, 2]))):  # missing, twice
                out.append(f"{json.dumps(key)}: {draw(value)}")
        return out

    payload = "{" + ", ".join(pairs(_CHAT_KEYS)) + "}"
    body = ", ".join([*pairs(_ENVELOPE_KEYS), f'"payload": {payload}'])
    return ("{" + body + "}").encode("utf-8", "surrogatepass")


@given(data=chat_envelopes())
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_typed_chat_path_gives_what_the_general_checks_give(data: bytes) -> None:
    """Whatever msgspec accepts, the general path accepts too, with the very same event."""
    chat = wire.decode_chat(data)
    if chat is not None:
        assert events._typed_chat(chat) == _general(data)


def test_the_fuzzed_envelopes_reach_the_typed_path() -> None:
    """The comparison above is only worth something if some fuzzed bodies take the typed path
    (and some do not)."""
    assert wire.decode_chat(find(chat_envelopes(), lambda d: wire.decode_chat(d) is not None))
    assert wire.decode_chat(find(chat_envelopes(), lambda d: wire.decode_chat(d) is None)) is None


_VOUCHED = '{"username": "a", "msg": "x"'  # a chat payload msgspec checks, to be continued


@pytest.mark.parametrize(
    ("payload", "typed"),
    [
        pytest.param(_VOUCHED + ', "meta": {}, "time": 1}', True, id="chat"),
        pytest.param('{"username": "a", "msg": "&lt;3 <b>x</b>", "time": null}', True, id="html"),
        pytest.param(_VOUCHED + ', "meta": {"addClass": "action"}}', True, id="css"),
        pytest.param(_VOUCHED + ', "meta": {"shadow": true}, "to": "x"}', True, id="shadow"),
        pytest.param(_VOUCHED + ', "meta": {"modflair": 2, "addClass": null}}', True, id="mod"),
        pytest.param(_VOUCHED + ', "meta": null, "extra": [1, {"b": 2}]}', False, id="unknown-key"),
        pytest.param(_VOUCHED + ', "meta": {"shadow": 1}}', False, id="shadow-not-boolean"),
        pytest.param(_VOUCHED + ', "to": 5}', False, id="to-not-string"),
        pytest.param('{"username": "a", "msg": "\\ud800"}', False, id="escaped-lone-surrogate"),
        pytest.param(_VOUCHED + ', "time": 1.0}', False, id="float-time"),
        pytest.param(_VOUCHED + ', "time": true}', False, id="bool-time"),
        pytest.param(_VOUCHED + ', "time": -1}', False, id="negative-time"),
        pytest.param(
            _VOUCHED + ', "meta": {"modflair": ' + "9" * 4400 + "}}", False, id="long-int"
        ),
        pytest.param(_VOUCHED + ', "time": ' + "9" * 20 + "}", False, id="int-beyond-64-bits"),
        pytest.param(_VOUCHED + " " * 2_100_000 + "}", False, id="body-over-the-limit"),
        pytest.param(_VOUCHED + ', "n": NaN}', False, id="nan"),
        pytest.param(_VOUCHED + ', "d": ' + "[" * 40 + "]" * 40 + "}", False, id="deep"),
        pytest.param(_VOUCHED + ', "meta": []}', False, id="meta-array"),
        pytest.param('{"username": "a", "msg": "' + "m" * 20_001 + '"}', False, id="long-msg"),
        pytest.param('{"username": 5, "msg": "x"}', False, id="username-number"),
    ],
)
@pytest.mark.parametrize("event_name", ["chatMsg", "pm"])
def test_a_chat_line_takes_the_typed_path_only_when_msgspec_can_vouch_for_it(
    event_name: str, payload: str, typed: bool
) -> None:
    """The bridge's lines take the typed path; what msgspec refuses or cannot vouch for (long
    integers, depth) takes the general one; either way the result is the general path's."""
    data = fuzzwire.raw_envelope(event_name, payload)
    chat = wire.decode_chat(data)
    assert (chat is not None) is typed
    try:
        parsed: object = parse_event(SUBJECT, data)
    except MalformedEvent as exc:
        parsed = ("malformed", exc.reason)
    assert parsed == _general(data)
    if chat is not None:
        assert events._typed_chat(chat) == parsed


def test_raw_utf8_surrogates_take_the_general_path_and_are_repaired() -> None:
    data = fuzzwire.raw_envelope("chatMsg", '{"username": "a", "msg": "x@"}')
    data = data.replace(b"x@", b"x\xed\xa0\x80")  # U+D800 encoded as if it were a character
    assert wire.decode_chat(data) is None
    event = parse_event(SUBJECT, data)
    assert isinstance(event, ChatEvent)
    assert event.raw == "x\ufffd"
