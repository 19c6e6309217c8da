"""Parse the bridge's event envelope into typed, immutable events.

Kryten-Robot publishes every CyTube event as ``{event_name, payload, channel, domain, timestamp,
correlation_id}`` (PROTOCOL.md §3). This module checks that shape, turns the events a chat bot
needs into small frozen dataclasses, decodes chat HTML into plain text, and raises
:class:`~kryten_llm.errors.MalformedEvent` for anything else that claims to be one of them.
Events the bot has no use for become :class:`OtherEvent` without looking at their payload.

It runs inside the NATS callback for every event, so it is plain code over ``json.loads``
output: no validation framework, no regexes on the fast path.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kryten_llm.errors import MalformedEvent

_TAG = re.compile(r"<[^>]{0,2000}>")


@dataclass(frozen=True, slots=True)
class Envelope:
    """The bridge's wrapper around every event."""

    event_name: str
    channel: str
    domain: str
    timestamp: str
    correlation_id: str


@dataclass(frozen=True, slots=True)
class User:
    """A user as CyTube lists them (``userlist`` element or ``addUser``)."""

    name: str
    rank: float
    afk: bool = False
    muted: bool = False


@dataclass(frozen=True, slots=True)
class ChatEvent:
    """A ``chatMsg`` or ``pm``.

    Attributes:
        text: ``msg`` with HTML tags stripped and entities decoded: what a person reads.
        raw: ``msg`` exactly as CyTube sent it (HTML).
        time_ms: CyTube's own timestamp (ms since the epoch), 0 when absent.
        css_class: ``meta.addClass`` ("server-whisper", "action", "greentext"...) or "".
        to: the recipient of a ``pm``; ``None`` for public chat.
    """

    envelope: Envelope
    username: str
    text: str
    raw: str
    time_ms: int
    shadow: bool = False
    css_class: str = ""
    to: str | None = None

    @property
    def is_pm(self) -> bool:
        return self.to is not None


@dataclass(frozen=True, slots=True)
class UserListEvent:
    envelope: Envelope
    users: tuple[User, ...]


@dataclass(frozen=True, slots=True)
class UserJoinEvent:
    envelope: Envelope
    user: User


@dataclass(frozen=True, slots=True)
class UserLeaveEvent:
    envelope: Envelope
    name: str


@dataclass(frozen=True, slots=True)
class RankEvent:
    """``setUserRank``: ranks may be fractional (1.5 while leading the playlist)."""

    envelope: Envelope
    name: str
    rank: float


@dataclass(frozen=True, slots=True)
class AfkEvent:
    envelope: Envelope
    name: str
    afk: bool


@dataclass(frozen=True, slots=True)
class MediaEvent:
    """``changeMedia``: the new current video (its playlist uid comes in ``setCurrent``)."""

    envelope: Envelope
    media_id: str
    title: str
    seconds: float
    duration: str
    media_type: str
    current_time: float = 0.0
    paused: bool = False


@dataclass(frozen=True, slots=True)
class CurrentEvent:
    """``setCurrent``: the playlist uid of the item now playing."""

    envelope: Envelope
    uid: int


@dataclass(frozen=True, slots=True)
class MediaUpdateEvent:
    envelope: Envelope
    current_time: float
    paused: bool


@dataclass(frozen=True, slots=True)
class CooldownEvent:
    """``cooldown``: CyTube dropped the bot's message for flooding; wait ``milliseconds``."""

    envelope: Envelope
    milliseconds: float


@dataclass(frozen=True, slots=True)
class NoFloodEvent:
    """``noflood``: the bot is being throttled or muted for chatting too fast."""

    envelope: Envelope
    action: str
    message: str


@dataclass(frozen=True, slots=True)
class OtherEvent:
    """Any event the bot does not interpret; its payload is kept as received."""

    envelope: Envelope
    payload: Any


Event = (
    ChatEvent
    | UserListEvent
    | UserJoinEvent
    | UserLeaveEvent
    | RankEvent
    | AfkEvent
    | MediaEvent
    | CurrentEvent
    | MediaUpdateEvent
    | CooldownEvent
    | NoFloodEvent
    | OtherEvent
)


class _Bad(Exception):
    """Internal: a payload field is missing or has the wrong type."""


def plain_text(msg: str) -> str:
    """CyTube's chat HTML as the text a person reads: tags dropped, entities decoded."""
    if "<" in msg:
        msg = _TAG.sub("", msg)
    if "&" in msg:
        msg = html.unescape(msg)
    return msg


def parse_event(subject: str, data: bytes) -> Event:
    """Parse one message from ``kryten.events.cytube.<channel>.<event>``.

    Args:
        subject: the NATS subject (used only in error reports).
        data: the raw message body.

    Returns:
        A typed event; :class:`OtherEvent` for event names the bot does not interpret.

    Raises:
        MalformedEvent: the body is not the bridge's envelope, or a known event's payload
            lacks a field the bot relies on.
    """
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedEvent(subject, f"not JSON ({exc.__class__.__name__})") from None
    if not isinstance(body, dict):
        raise MalformedEvent(subject, "envelope is not a JSON object")
    try:
        envelope = Envelope(
            event_name=_str(body, "event_name"),
            channel=_str(body, "channel"),
            domain=_str(body, "domain"),
            timestamp=_str(body, "timestamp", ""),
            correlation_id=_str(body, "correlation_id", ""),
        )
        if "payload" not in body:
            raise _Bad("envelope has no payload")
        parser = _PARSERS.get(envelope.event_name)
        if parser is None:
            return OtherEvent(envelope, body["payload"])
        return parser(envelope, body["payload"])
    except _Bad as exc:
        raise MalformedEvent(subject, str(exc)) from None


def _str(obj: Any, key: str, default: str | None = None) -> str:
    value = obj.get(key, default) if isinstance(obj, dict) else None
    if not isinstance(value, str):
        raise _Bad(f"{key!r} must be a string")
    return value


def _num(obj: Any, key: str, default: float | None = None) -> float:
    value = obj.get(key, default) if isinstance(obj, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad(f"{key!r} must be a number")
    return float(value)


def _obj(payload: Any, what: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise _Bad(f"{what} payload must be an object")
    return payload


def _chat(envelope: Envelope, payload: Any) -> ChatEvent:
    p = _obj(payload, envelope.event_name)
    raw = _str(p, "msg")
    meta = p.get("meta")
    if not isinstance(meta, dict):
        meta = {}
    css = meta.get("addClass")
    time_ms = p.get("time", 0)
    to = p.get("to") if envelope.event_name == "pm" else None
    return ChatEvent(
        envelope=envelope,
        username=_str(p, "username"),
        text=plain_text(raw),
        raw=raw,
        time_ms=int(time_ms) if isinstance(time_ms, int | float) else 0,
        shadow=meta.get("shadow") is True,
        css_class=css if isinstance(css, str) else "",
        to=(to if isinstance(to, str) else "") if envelope.event_name == "pm" else None,
    )


def _user(item: Any) -> User:
    u = _obj(item, "user")
    meta = u.get("meta")
    meta = meta if isinstance(meta, dict) else {}
    return User(
        name=_str(u, "name"),
        rank=_num(u, "rank", 0),
        afk=meta.get("afk") is True,
        muted=meta.get("muted") is True,
    )


def _userlist(envelope: Envelope, payload: Any) -> UserListEvent:
    if not isinstance(payload, list):
        raise _Bad("userlist payload must be an array")
    return UserListEvent(envelope, tuple(_user(item) for item in payload))


def _media(envelope: Envelope, payload: Any) -> MediaEvent:
    p = _obj(payload, "changeMedia")
    media_id = p.get("id", "")
    return MediaEvent(
        envelope=envelope,
        media_id=str(media_id) if isinstance(media_id, str | int) else "",
        title=plain_text(_str(p, "title")),
        seconds=_num(p, "seconds", 0),
        duration=_str(p, "duration", ""),
        media_type=_str(p, "type", ""),
        current_time=_num(p, "currentTime", 0),
        paused=p.get("paused") is True,
    )


def _current(envelope: Envelope, payload: Any) -> CurrentEvent:
    if isinstance(payload, bool) or not isinstance(payload, int | float):
        raise _Bad("setCurrent payload must be a number")
    return CurrentEvent(envelope, int(payload))


def _cooldown(envelope: Envelope, payload: Any) -> CooldownEvent:
    if isinstance(payload, bool) or not isinstance(payload, int | float):
        raise _Bad("cooldown payload must be a number of milliseconds")
    return CooldownEvent(envelope, float(payload))


def _noflood(envelope: Envelope, payload: Any) -> NoFloodEvent:
    p = _obj(payload, "noflood")
    return NoFloodEvent(envelope, _str(p, "action", ""), _str(p, "msg", ""))


_PARSERS: dict[str, Callable[[Envelope, Any], Event]] = {
    "chatMsg": _chat,
    "pm": _chat,
    "userlist": _userlist,
    "addUser": lambda env, p: UserJoinEvent(env, _user(p)),
    "userLeave": lambda env, p: UserLeaveEvent(env, _str(_obj(p, "userLeave"), "name")),
    "setUserRank": lambda env, p: RankEvent(
        env, _str(_obj(p, "setUserRank"), "name"), _num(p, "rank")
    ),
    "setAFK": lambda env, p: AfkEvent(
        env, _str(_obj(p, "setAFK"), "name"), _obj(p, "setAFK").get("afk") is True
    ),
    "changeMedia": _media,
    "setCurrent": _current,
    "mediaUpdate": lambda env, p: MediaUpdateEvent(
        env, _num(_obj(p, "mediaUpdate"), "currentTime", 0), p.get("paused") is True
    ),
    "cooldown": _cooldown,
    "noflood": _noflood,
}
