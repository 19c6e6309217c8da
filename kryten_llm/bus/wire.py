"""The one place where values from the wire are checked before the bot uses them.

Everything a channel sends reaches the bot through :func:`kryten_llm.bus.events.parse_event`,
and that function checks each value it keeps with the helpers here, once, so that no later
stage has to: the response log, the prompt builder and the sender can trust what they get.

- The body is bounded in size and nesting (deep JSON would otherwise raise ``RecursionError``
  in ``json.loads`` or in whatever walks the value later).
- Numbers are finite and in a range CyTube can produce (``1e400`` parses as ``inf``, and a
  4,000-digit integer overflows ``float()``); times must fit a ``datetime``.
- Strings are valid Unicode: a JSON ``"\\ud800"`` escape gives a lone surrogate that cannot be
  encoded as UTF-8 and would break the first file or socket it is written to; such code points
  become U+FFFD. Strings are bounded in length.

A value that fails a check raises :class:`Bad`, which ``parse_event`` turns into a
:class:`~kryten_llm.errors.MalformedEvent`. The checks cost a type test and a comparison or
two on the fast path; ``str.isascii`` skips the surrogate check for almost every string.

Chat lines, nearly all of the traffic, first try :func:`decode_chat`: msgspec decodes the
envelope into a typed schema and checks every type and length limit above in one C call. It
only ever accepts: whatever it refuses, or cannot vouch for, takes the general path, so the
results and the errors stay those of the checks above (tests compare the two on fuzzed bodies).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Annotated, Any

import msgspec

MAX_BODY_BYTES = 2 * 1024 * 1024
"""A whole envelope; a ``userlist`` of a few thousand users with aliases fits easily."""
MAX_DEPTH = 32
"""Nesting of objects and arrays; the bridge's deepest real payload is about 5."""
MAX_COOLDOWN_MS = 60_000
"""A ``cooldown`` longer than this (or infinite) is capped to it: PROTOCOL contract."""
MAX_TIME_MS = 32_503_680_000_000
"""``time`` fields up to 3000-01-01 (ms since the epoch); ``datetime`` overflows past 9999."""
MAX_MEDIA_SECONDS = 10_000_000.0
"""Media durations and positions (115 days; a live stream reports 0)."""
MIN_MEDIA_POSITION = -3600.0
"""CyTube reports a small negative ``currentTime`` during its lead-in."""
MIN_RANK, MAX_RANK = -1.0, 255.0
"""CyTube ranks: -1 anonymous .. 255 site administrator (PROTOCOL.md §9)."""
MAX_UID = 2**53
"""Playlist uids are small positive integers; beyond 2**53 a float is no longer exact."""
MAX_NAME = 100
"""User, channel and recipient names (CyTube allows 20 and 30 characters)."""
MAX_TEXT = 20_000
"""``msg`` as HTML: 1,000 raw characters at most, each escaped to 6 at most, plus links."""
MAX_SHORT = 1_000
"""Every other string the bot keeps (titles, ids, timestamps, css classes)."""
MAX_EVENT_NAME = MAX_DOMAIN = 255
"""An envelope's ``event_name`` and ``domain``."""


class Bad(Exception):
    """A value from the wire is missing, has the wrong type, or is out of range."""


def load_body(data: bytes) -> Any:
    """``json.loads`` with the size and depth bounded.

    Raises:
        Bad: too big, not JSON, or nested deeper than :data:`MAX_DEPTH`.
    """
    if len(data) > MAX_BODY_BYTES:
        raise Bad(f"body of {len(data)} bytes is over {MAX_BODY_BYTES}")
    try:
        body = _fast_loads(data)
    except RecursionError:
        raise Bad("nested too deeply") from None
    except Exception as exc:  # ValueError, UnicodeDecodeError, int digit limits...
        raise Bad(f"not JSON ({exc.__class__.__name__})") from None
    # Depth cannot exceed the number of brackets: the walk runs only when it might matter.
    if data.count(b"[") + data.count(b"{") > MAX_DEPTH and _depth(body) > MAX_DEPTH:
        raise Bad(f"nested deeper than {MAX_DEPTH}")
    return body


# The scanner json.loads ends in (C code); typeshed leaves the attribute out.
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _fast_loads(data: bytes) -> Any:
    """``json.loads(data)``, in half the time for what the bridge sends.

    The bridge's bodies are UTF-8 with nothing around the JSON value, so the scanner is called
    directly and ``json.loads``' encoding detection and whitespace handling are skipped. Any
    other body (another encoding, a BOM, surrounding whitespace, not JSON) is handed to
    ``json.loads`` itself, so the result and the errors are exactly ``json.loads``'.
    """
    try:
        decoded = data.decode()
        body, end = _scan(decoded, 0)
    except (StopIteration, ValueError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return json.loads(data)
    if end != len(decoded):
        return json.loads(data)
    return body


def _depth(value: Any) -> int:
    """How deeply ``value`` nests, without recursion (so any depth is safe to measure)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


def clean_text(value: str) -> str:
    """``value`` as valid Unicode: each lone surrogate becomes U+FFFD.

    A high and a low surrogate side by side (raw bytes decoded with ``surrogatepass``) are
    joined into the character they stand for, as UTF-16 would.
    """
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return value


def text(obj: Any, key: str, default: str | None = None, *, limit: int = MAX_SHORT) -> str:
    """``obj[key]`` as a clean string of at most ``limit`` characters.

    Raises:
        Bad: missing (with no default), not a string, or longer than ``limit``.
    """
    value = obj.get(key, default) if isinstance(obj, dict) else None
    if not isinstance(value, str):
        raise Bad(f"{key!r} must be a string")
    if len(value) > limit:
        raise Bad(f"{key!r} is longer than {limit} characters")
    return clean_text(value)


def optional_text(obj: dict[str, Any], key: str, *, limit: int = MAX_SHORT) -> str:
    """``obj[key]`` when it is a string (cleaned, cut to ``limit``), else ``""``."""
    value = obj.get(key)
    return clean_text(value[:limit]) if isinstance(value, str) else ""


def number(value: Any, what: str, low: float, high: float) -> float:
    """``value`` as a finite float in ``[low, high]``.

    Integers are compared before conversion, so a 4,000-digit one is refused, not overflowed.

    Raises:
        Bad: not a number (booleans are not), NaN, infinite or out of range.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Bad(f"{what} must be a number")
    if not low <= value <= high:  # False for NaN too
        raise Bad(f"{what} must be between {low:g} and {high:g}")
    return float(value)


def field(obj: Any, key: str, low: float, high: float, default: float | None = None) -> float:
    """:func:`number` on ``obj[key]``; ``default`` when the key is absent."""
    if not isinstance(obj, dict):
        raise Bad(f"{key!r} must be a number")
    if key not in obj and default is not None:
        return default
    return number(obj.get(key), repr(key), low, high)


def integer(value: Any, what: str, low: int, high: int) -> int:
    """``value`` as an int in ``[low, high]``; a float must be integral (``3.0`` is 3).

    Raises:
        Bad: not a number, not integral, NaN, infinite or out of range.
    """
    number(value, what, low, high)
    if isinstance(value, float) and not value.is_integer():
        raise Bad(f"{what} must be a whole number")
    return int(value)


def cooldown_ms(value: Any) -> float:
    """A ``cooldown`` payload in milliseconds, capped at :data:`MAX_COOLDOWN_MS`.

    ``Infinity`` and anything over 60 s count as 60 s: CyTube never asks for longer, and an
    uncapped value would mute the channel until a restart.

    Raises:
        Bad: not a number, NaN (ignored, not guessed at), or negative.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Bad("cooldown payload must be a number of milliseconds")
    if isinstance(value, float) and math.isnan(value):
        raise Bad("cooldown is NaN")
    if value < 0:
        raise Bad("cooldown is negative")
    return float(min(value, MAX_COOLDOWN_MS))


# --- the chat fast path ----------------------------------------------------------------------

_Name = Annotated[str, msgspec.Meta(max_length=MAX_NAME)]
_Domain = Annotated[str, msgspec.Meta(max_length=MAX_DOMAIN)]
_Short = Annotated[str, msgspec.Meta(max_length=MAX_SHORT)]
_Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]
_Time = Annotated[int, msgspec.Meta(ge=0, le=MAX_TIME_MS)]


class _Exact(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """Only the keys named: a key the schema does not know sends the line the general way, so
    nothing is skipped unseen (deep nesting or a long integer in an unknown key included)."""


class ChatMeta(_Exact):
    """``meta`` as CyTube sends it with chat (PROTOCOL.md §3.1)."""

    shadow: bool | None = None
    css_class: str | None = msgspec.field(default=None, name="addClass")
    name_class: bool | None = msgspec.field(default=None, name="addClassToNameAndTimestamp")
    modflair: int | float | None = None


class ChatPayload(_Exact):
    """A ``chatMsg``/``pm`` payload: the same types and limits as the general checks."""

    username: _Name
    msg: _Text
    meta: ChatMeta | None = None
    time: _Time | None = None
    to: str | None = None


class ChatWire(_Exact):
    """A chat envelope as the bridge sends it (PROTOCOL.md §3), decoded and type-checked."""

    event_name: str
    payload: ChatPayload
    channel: _Name
    domain: _Domain
    timestamp: _Short = ""
    correlation_id: _Short = ""


_decode_chat = msgspec.json.Decoder(ChatWire).decode


def decode_chat(data: bytes) -> ChatWire | None:
    """``data`` as a chat envelope that passes every check here, or ``None``: take the general path.

    msgspec refuses what the general path would refuse or repair (wrong types, lengths over
    the limits, lone surrogates, invalid UTF-8, ``NaN``, integers beyond 64 bits, which
    ``json.loads`` would take or refuse by their length) and every key the schema does not
    name, so the body nests three deep at most. Strings it returns are valid Unicode, so
    nothing needs cleaning.
    """
    if len(data) > MAX_BODY_BYTES:  # refused by the general path, whatever it holds
        return None
    try:
        chat = _decode_chat(data)
    except msgspec.DecodeError:  # ValidationError is a DecodeError
        return None
    if chat.event_name != "chatMsg" and chat.event_name != "pm":
        return None
    return chat
