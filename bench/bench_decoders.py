"""What one chat line costs at the parse boundary, decoder by decoder (in this process).

Times one bridge ``chatMsg`` envelope (byte for byte as the bridge makes it): ``json.loads``;
the general path's decoder (:func:`kryten_llm.bus.wire.load_body`: the stdlib scanner called
directly) and the whole general path (``events._parse``: decode, envelope and field checks);
the typed path the bot takes for chat (:func:`kryten_llm.bus.wire.decode_chat`: msgspec into
the checked schema) and the whole ``parse_event``, which is the typed path plus the records;
and, when importable, orjson (not a dependency: put it on ``PYTHONPATH`` to compare).

    python bench/bench_decoders.py [N]
"""

from __future__ import annotations

import json
import sys
import timeit
from collections.abc import Callable

from _harness import chat_bytes, machine

from kryten_llm.bus import events, wire
from kryten_llm.bus.events import parse_event

LINE = "anyone else hear that weird noise at 12:30?"


def per_call(call: Callable[[], object], count: int) -> float:
    """Microseconds per call, best of five."""
    return min(timeit.repeat(call, number=count, repeat=5)) / count * 1e6


def main(count: int) -> None:
    data = chat_bytes("user1", LINE)
    assert wire.decode_chat(data) is not None, "the bridge's chat line must take the typed path"
    rows: list[tuple[str, float]] = [
        ("json.loads", per_call(lambda: json.loads(data), count)),
        ("general path: decode (wire.load_body)", per_call(lambda: wire.load_body(data), count)),
        ("general path: whole (events._parse)", per_call(lambda: events._parse(data), count)),
        ("typed path: msgspec (wire.decode_chat)", per_call(lambda: wire.decode_chat(data), count)),
        ("parse_event (typed path + records)", per_call(lambda: parse_event("x", data), count)),
    ]
    try:
        import orjson

        rows.append(
            ("orjson.loads (not a dependency)", per_call(lambda: orjson.loads(data), count))
        )
    except ImportError:
        pass
    print(f"machine: {machine()}")
    print(f"one chatMsg envelope of {len(data)} bytes, {count:,} calls, best of 5")
    for name, micros in rows:
        print(f"  {name:<42} {micros:5.2f} us")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
