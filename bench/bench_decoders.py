"""What a faster JSON decoder would save per chat line at the parse boundary.

Times, in this process, one bridge ``chatMsg`` envelope (byte for byte as the bridge makes it):
``json.loads``; the decoder the bot uses (:func:`kryten_llm.bus.wire.load_body`: the stdlib
scanner called directly); the whole ``parse_event``; and, when they are importable, orjson and
msgspec (plain decode, msgspec also into a typed Struct) and ``parse_event`` with each of them
in place of the stdlib scanner (falling back to it on any error, as the bot would have to, to
keep ``json.loads``' results for lone surrogates and ``NaN``). Neither is a dependency of the
bot: put them on ``PYTHONPATH`` to measure them.

    python bench/bench_decoders.py [N]
"""

from __future__ import annotations

import json
import sys
import timeit
from collections.abc import Callable
from typing import Any

from _harness import chat_bytes, machine

from kryten_llm.bus import wire
from kryten_llm.bus.events import parse_event

LINE = "anyone else hear that weird noise at 12:30?"


def per_call(call: Callable[[], object], count: int) -> float:
    """Microseconds per call, best of five."""
    return min(timeit.repeat(call, number=count, repeat=5)) / count * 1e6


def with_decoder(decode: Callable[[bytes], Any], data: bytes, count: int) -> float:
    """``parse_event`` with ``decode`` in front of the stdlib scanner."""
    stdlib = wire._fast_loads

    def first(body: bytes) -> Any:
        try:
            return decode(body)
        except Exception:
            return stdlib(body)

    wire._fast_loads = first
    try:
        return per_call(lambda: parse_event("x", data), count)
    finally:
        wire._fast_loads = stdlib


def main(count: int) -> None:
    data = chat_bytes("user1", LINE)
    rows: list[tuple[str, float]] = [
        ("json.loads", per_call(lambda: json.loads(data), count)),
        ("the bot's decoder (wire.load_body)", per_call(lambda: wire.load_body(data), count)),
        ("parse_event, the bot's decoder", per_call(lambda: parse_event("x", data), count)),
    ]
    try:
        import orjson

        rows.append(("orjson.loads", per_call(lambda: orjson.loads(data), count)))
        rows.append(("parse_event with orjson", with_decoder(orjson.loads, data, count)))
    except ImportError:
        rows.append(("orjson: not installed", float("nan")))
    try:
        import msgspec

        plain = msgspec.json.Decoder()

        # defstruct: classes declared here would have string annotations (future import)
        payload = msgspec.defstruct(
            "Payload",
            [("username", str), ("msg", str), ("meta", dict, {}), ("time", int | None, None)],
        )
        envelope = msgspec.defstruct(
            "ChatEnvelope",
            [
                ("payload", payload),
                ("channel", str),
                ("domain", str),
                ("timestamp", str, ""),
                ("correlation_id", str, ""),
            ],
            tag_field="event_name",
            tag="chatMsg",
        )
        typed = msgspec.json.Decoder(envelope)
        rows.append(("msgspec decode", per_call(lambda: plain.decode(data), count)))
        typed_micros = per_call(lambda: typed.decode(data), count)
        rows.append(("msgspec decode into a typed Struct", typed_micros))
        rows.append(("parse_event with msgspec", with_decoder(plain.decode, data, count)))
    except ImportError:
        rows.append(("msgspec: not installed", float("nan")))
    print(f"machine: {machine()}")
    print(f"one chatMsg envelope of {len(data)} bytes, {count:,} calls, best of 5")
    for name, micros in rows:
        print(f"  {name:<40} {micros:5.2f} us")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
