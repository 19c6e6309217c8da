"""Hypothesis strategies for what a channel could put on the wire, shared by the whole-path fuzz
test and ``bench/bench_fuzz.py``.

Values are built as raw JSON *text*, so that they can hold what ``json.dumps`` of a dict cannot
express on purpose: ``1e400``, 400-digit integers, ``NaN``/``Infinity``, lone-surrogate escapes,
thousands of nested brackets. Envelopes follow the bridge's layout with every event type the
bot parses, each field either plausible or hostile.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

from hypothesis import strategies as st

EVENT_NAMES = (
    "chatMsg",
    "pm",
    "userlist",
    "addUser",
    "userLeave",
    "setUserRank",
    "setAFK",
    "changeMedia",
    "setCurrent",
    "mediaUpdate",
    "cooldown",
    "noflood",
    "usercount",
    "setLeader",
    "rank",
    "kick",
    "errorMsg",
)
TOKENS = (*(name.lower() for name in EVENT_NAMES), "weird")
FIELDS = (
    "username",
    "msg",
    "meta",
    "time",
    "to",
    "name",
    "rank",
    "id",
    "title",
    "seconds",
    "duration",
    "type",
    "currentTime",
    "paused",
    "afk",
    "action",
    "addClass",
    "shadow",
)
HOSTILE_NUMBERS = (
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "-1e400",
    "1e17",
    "-1e17",
    "9" * 400,
    "-" + "9" * 400,
    "1e308",
    "-0",
    "4.9e-324",
    "1.5",
    "-1",
    "0",
)


NOW_MS = int(time.time() * 1000)


def raw_envelope(event_name: str, payload: str) -> bytes:
    """An envelope as the bridge lays it out, with ``payload`` inserted as raw JSON text
    (``1e400``, ``NaN``, a 400-digit integer, 100,000 brackets...)."""
    return (
        f'{{"event_name": "{event_name}", "payload": {payload}, "channel": "MyChannel", '
        f'"domain": "cytu.be", "timestamp": "{datetime.now(UTC).isoformat()}", '
        f'"correlation_id": "{uuid.uuid4()}"}}'
    ).encode()


def chat_payload(msg: str, time_ms: str = str(NOW_MS), username: str = "alice") -> str:
    return (
        f'{{"username": "{username}", "msg": {json.dumps(msg)}, "meta": {{}}, "time": {time_ms}}}'
    )


def _text(max_size: int = 40) -> st.SearchStrategy[str]:
    """Any code points, lone surrogates and controls included."""
    return st.text(st.characters(codec=None, exclude_categories=()), max_size=max_size)


specials = st.sampled_from(["", "cynthia", "\ud800", "a\udfffb", "\x00", "<b>x</b>", "&#xD800;"])


@st.composite
def _strings(draw: st.DrawFn) -> str:
    """Mostly short hostile text; one in fifty is 1 kB to 300 kB (kept rare: a batch of
    them would only measure the network)."""
    roll = draw(st.integers(0, 49))
    if roll == 0:
        return "x" * draw(st.sampled_from([1_000, 30_000, 300_000]))
    return draw(specials if roll < 10 else _text())


strings = _strings()
numbers = (
    st.sampled_from(HOSTILE_NUMBERS)
    | st.integers().map(str)
    | st.floats().map(json.dumps)  # NaN and Infinity as Python's json writes them
)
scalars = (
    numbers
    | strings.map(json.dumps)  # ensure_ascii: a surrogate becomes a \\udXXX escape
    | st.sampled_from(["true", "false", "null"])
)
deep = st.integers(30, 3_000).flatmap(
    lambda n: st.sampled_from(["[" * n + "]" * n, '{"a":' * n + "1" + "}" * n])
)


def _array(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]"


def _object(pairs: dict[str, str]) -> str:
    return "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in pairs.items()) + "}"


values = (
    st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=5).map(_array)
            | st.dictionaries(st.sampled_from(FIELDS) | _text(8), inner, max_size=6).map(_object)
        ),
        max_leaves=16,
    )
    | deep
)

mention = st.tuples(st.sampled_from(["cynthia ", "CynthiaRothbot, ", "", "hey cynthia "]), strings)
# An object whose keys are the fields the bot reads, each plausible or hostile.
shaped = st.dictionaries(
    st.sampled_from(FIELDS),
    st.one_of(
        values,
        mention.map(lambda parts: json.dumps(parts[0] + parts[1])),
        st.just(str(int(time.time() * 1000))),
        st.sampled_from(['"alice"', '"bob"', '"CynthiaRothbot"', "{}", "0", "213", "false"]),
    ),
    max_size=len(FIELDS),
).map(_object)
payloads = shaped | values | st.lists(shaped, max_size=4).map(_array)


@st.composite
def envelopes(draw: st.DrawFn) -> bytes:
    """One envelope as raw bytes: each envelope field is hostile one time in eight (so most
    payloads get past the envelope), and sometimes a key is missing."""

    def field(plausible: st.SearchStrategy[str]) -> str:
        return draw(values if draw(st.integers(0, 7)) == 0 else plausible)

    fields = {
        "event_name": field(st.sampled_from(EVENT_NAMES).map(json.dumps)),
        "payload": draw(payloads),
        "channel": field(st.just('"MyChannel"')),
        "domain": field(st.just('"cytu.be"')),
        "timestamp": field(st.just('"2026-11-22T08:12:29.577351+00:00"')),
        "correlation_id": field(st.just(json.dumps(str(uuid.uuid4())))),
    }
    dropped = draw(st.sets(st.sampled_from(sorted(fields)), max_size=1) | st.just(set()))
    return _object({k: v for k, v in fields.items() if k not in dropped}).encode(
        "utf-8", "surrogatepass"
    )


MAX_PAYLOAD = 900_000
messages = st.tuples(
    st.sampled_from(TOKENS),
    (envelopes() | st.binary(max_size=200)).map(lambda body: body[:MAX_PAYLOAD]),
)
"""``(subject token, body)`` pairs; bodies stay under nats-server's 1 MB payload limit."""
