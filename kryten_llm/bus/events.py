"""Parse the bridge's event envelope into typed, immutable events.

Kryten-Robot publishes every CyTube event as ``{event_name, payload, channel, domain, timestamp,
correlation_id}`` (PROTOCOL.md §3). This module checks that shape, turns the events a chat bot
needs into small immutable records, decodes chat HTML into plain text, and raises
:class:`~kryten_llm.errors.MalformedEvent` for anything else that claims to be one of them.
Events the bot has no use for become :class:`OtherEvent` without looking at their payload.

This is the parse boundary: every value an event carries is validated here, once, with the
helpers of :mod:`kryten_llm.bus.wire` (valid Unicode, finite numbers in range, bounded size and
depth), and ``parse_event`` raises nothing but ``MalformedEvent`` whatever the bytes.

It runs inside the NATS callback for every event. A chat line, nearly all of the traffic, is
decoded and checked by msgspec against a typed schema (:func:`~kryten_llm.bus.wire.decode_chat`,
~0.4 µs); everything else, and any chat line that schema refuses, takes plain code over
``json.loads`` output, which gives the result or the error.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

import msgspec

from kryten_llm.bus.wire import (
    MAX_DOMAIN,
    MAX_EVENT_NAME,
    MAX_MEDIA_SECONDS,
    MAX_NAME,
    MAX_RANK,
    MAX_SHORT,
    MAX_TEXT,
    MAX_TIME_MS,
    MAX_UID,
    MIN_MEDIA_POSITION,
    MIN_RANK,
    Bad,
    ChatWire,
    clean_text,
    cooldown_ms,
    decode_chat,
    field,
    integer,
    load_body,
    number,
    optional_text,
    text,
)
from kryten_llm.errors import MalformedEvent

_TAG = re.compile(r"<[^>]{0,2000}>")


# Frozen msgspec Structs, not frozen dataclasses: built in C (two per chat line); gc=False where a
# record holds only strings, numbers and records (no cycles, so the collector skips them).


class Envelope(msgspec.Struct, frozen=True, gc=False):
    """The bridge's wrapper around every event."""

    event_name: str
    channel: str
    domain: str
    timestamp: str
    correlation_id: str


class User(msgspec.Struct, frozen=True, gc=False):
    """A user as CyTube lists them (``userlist`` element or ``addUser``)."""

    name: str
    rank: float
    afk: bool = False
    muted: bool = False


class ChatEvent(msgspec.Struct, frozen=True, gc=False):
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


class UserListEvent(msgspec.Struct, frozen=True, gc=False):
    envelope: Envelope
    users: tuple[User, ...]


class UserJoinEvent(msgspec.Struct, frozen=True, gc=False):
    envelope: Envelope
    user: User


class UserLeaveEvent(msgspec.Struct, frozen=True, gc=False):
    envelope: Envelope
    name: str


class RankEvent(msgspec.Struct, frozen=True, gc=False):
    """``setUserRank``: ranks may be fractional (1.5 while leading the playlist)."""

    envelope: Envelope
    name: str
    rank: float


class AfkEvent(msgspec.Struct, frozen=True, gc=False):
    envelope: Envelope
    name: str
    afk: bool


class MediaEvent(msgspec.Struct, frozen=True, gc=False):
    """``changeMedia``: the new current video (its playlist uid comes in ``setCurrent``)."""

    envelope: Envelope
    media_id: str
    title: str
    seconds: float
    duration: str
    media_type: str
    current_time: float = 0.0
    paused: bool = False


class CurrentEvent(msgspec.Struct, frozen=True, gc=False):
    """``setCurrent``: the playlist uid of the item now playing."""

    envelope: Envelope
    uid: int


class MediaUpdateEvent(msgspec.Struct, frozen=True, gc=False):
    envelope: Envelope
    current_time: float
    paused: bool


class CooldownEvent(msgspec.Struct, frozen=True, gc=False):
    """``cooldown``: CyTube dropped the bot's message for flooding; wait ``milliseconds``."""

    envelope: Envelope
    milliseconds: float


class NoFloodEvent(msgspec.Struct, frozen=True, gc=False):
    """``noflood``: the bot is being throttled or muted for chatting too fast."""

    envelope: Envelope
    action: str
    message: str


class OtherEvent(msgspec.Struct, frozen=True):
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


def plain_text(msg: str) -> str:
    """CyTube's chat HTML as the text a person reads: tags dropped, entities decoded."""
    if "<" in msg:
        msg = _TAG.sub("", msg)
    if "&" in msg:
        msg = html.unescape(msg)
    return msg


def parse_event(subject: str, data: bytes) -> Event:
    """Parse one message from ``kryten.events.cytube.<channel>.<event>``.

    Every value the returned event holds has been checked once, here (:mod:`.wire`): strings
    are valid Unicode, numbers finite and in CyTube's ranges, the body bounded in size and
    depth. Later stages need no checks of their own.

    Args:
        subject: the NATS subject (used only in error reports).
        data: the raw message body.

    Returns:
        A typed event; :class:`OtherEvent` for event names the bot does not interpret.

    Raises:
        MalformedEvent: for any body that is not the bridge's envelope with a payload the bot
            can use. Anything else raised here is a bug in the checks, not a bad payload: the
            intake logs it with its traceback (``event_handling_failed``) instead of hiding it
            among the malformed ones; the fuzz tests keep it from happening.
    """
    chat = decode_chat(data)
    if chat is not None:
        return _typed_chat(chat)
    try:
        return _parse(data)
    except Bad as exc:
        raise MalformedEvent(subject, str(exc)) from None


def _typed_chat(chat: ChatWire) -> ChatEvent:
    """The :class:`ChatEvent` of a chat line msgspec has checked: what :func:`_chat` makes of it."""
    p = chat.payload
    meta = p.meta
    css_class = meta.css_class if meta is not None else None
    raw = p.msg
    to = None
    if chat.event_name == "pm":
        to = p.to[:MAX_NAME] if p.to is not None else ""
    return ChatEvent(
        Envelope(chat.event_name, chat.channel, chat.domain, chat.timestamp, chat.correlation_id),
        p.username,
        plain_text(raw),
        raw,
        0 if p.time is None else p.time,
        meta is not None and meta.shadow is True,
        css_class[:MAX_SHORT] if css_class is not None else "",
        to,
    )


def _parse(data: bytes) -> Event:
    body = load_body(data)
    if not isinstance(body, dict):
        raise Bad("envelope is not a JSON object")
    envelope = _envelope(body)
    if "payload" not in body:
        raise Bad("envelope has no payload")
    parser = _PARSERS.get(envelope.event_name)
    if parser is None:
        return OtherEvent(envelope, body["payload"])
    return parser(envelope, body["payload"])


def _envelope(body: dict[str, Any]) -> Envelope:
    get = body.get
    name, channel, domain = get("event_name"), get("channel"), get("domain")
    stamp, correlation_id = get("timestamp", ""), get("correlation_id", "")
    # Fast path, the bridge's envelope: five short ASCII strings, which the field checks below
    # would pass unchanged; tested in one go. Anything else gets the field checks themselves.
    if (
        type(name) is str
        and type(channel) is str
        and type(domain) is str
        and type(stamp) is str
        and type(correlation_id) is str
        and len(name) <= MAX_EVENT_NAME
        and len(channel) <= MAX_NAME
        and len(domain) <= MAX_DOMAIN
        and len(stamp) <= MAX_SHORT
        and len(correlation_id) <= MAX_SHORT
        and (name + channel + domain + stamp + correlation_id).isascii()
    ):
        return Envelope(name, channel, domain, stamp, correlation_id)
    return Envelope(
        event_name=text(body, "event_name", limit=MAX_EVENT_NAME),
        channel=text(body, "channel", limit=MAX_NAME),
        domain=text(body, "domain", limit=MAX_DOMAIN),
        timestamp=text(body, "timestamp", ""),
        correlation_id=text(body, "correlation_id", ""),
    )


def _name(obj: Any, key: str = "name") -> str:
    return text(obj, key, limit=MAX_NAME)


def _obj(payload: Any, what: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise Bad(f"{what} payload must be an object")
    return payload


def _chat(envelope: Envelope, payload: Any) -> ChatEvent:
    p = _obj(payload, envelope.event_name)
    raw = text(p, "msg", limit=MAX_TEXT)  # an ordinary chat line takes _typed_chat instead
    username = _name(p, "username")
    meta = p.get("meta")
    if not isinstance(meta, dict):
        meta = {}
    time_ms = p.get("time")
    is_pm = envelope.event_name == "pm"
    return ChatEvent(
        envelope=envelope,
        username=username,
        text=plain_text(raw),
        raw=raw,
        # Absent (or null) means unknown: 0. Present, it must be a time a datetime can hold.
        time_ms=0 if time_ms is None else int(number(time_ms, "'time'", 0, MAX_TIME_MS)),
        shadow=meta.get("shadow") is True,
        css_class=optional_text(meta, "addClass"),
        to=optional_text(p, "to", limit=MAX_NAME) if is_pm else None,
    )


def _user(item: Any) -> User:
    u = _obj(item, "user")
    meta = u.get("meta")
    meta = meta if isinstance(meta, dict) else {}
    return User(
        name=_name(u),
        rank=field(u, "rank", MIN_RANK, MAX_RANK, 0.0),
        afk=meta.get("afk") is True,
        muted=meta.get("muted") is True,
    )


def _userlist(envelope: Envelope, payload: Any) -> UserListEvent:
    if not isinstance(payload, list):
        raise Bad("userlist payload must be an array")
    return UserListEvent(envelope, tuple(_user(item) for item in payload))


def _media(envelope: Envelope, payload: Any) -> MediaEvent:
    p = _obj(payload, "changeMedia")
    media_id = p.get("id", "")
    if isinstance(media_id, int) and not isinstance(media_id, bool):
        media_id = str(integer(media_id, "'id'", -MAX_UID, MAX_UID))
    return MediaEvent(
        envelope=envelope,
        media_id=clean_text(media_id[:MAX_SHORT]) if isinstance(media_id, str) else "",
        title=plain_text(text(p, "title")),
        seconds=field(p, "seconds", 0, MAX_MEDIA_SECONDS, 0.0),
        duration=text(p, "duration", ""),
        media_type=text(p, "type", ""),
        current_time=field(p, "currentTime", MIN_MEDIA_POSITION, MAX_MEDIA_SECONDS, 0.0),
        paused=p.get("paused") is True,
    )


def _media_update(envelope: Envelope, payload: Any) -> MediaUpdateEvent:
    p = _obj(payload, "mediaUpdate")
    position = field(p, "currentTime", MIN_MEDIA_POSITION, MAX_MEDIA_SECONDS, 0.0)
    return MediaUpdateEvent(envelope, position, p.get("paused") is True)


def _rank(envelope: Envelope, payload: Any) -> RankEvent:
    p = _obj(payload, "setUserRank")
    return RankEvent(envelope, _name(p), field(p, "rank", MIN_RANK, MAX_RANK))


def _afk(envelope: Envelope, payload: Any) -> AfkEvent:
    p = _obj(payload, "setAFK")
    return AfkEvent(envelope, _name(p), p.get("afk") is True)


def _noflood(envelope: Envelope, payload: Any) -> NoFloodEvent:
    p = _obj(payload, "noflood")
    return NoFloodEvent(envelope, text(p, "action", ""), text(p, "msg", "", limit=MAX_TEXT))


_PARSERS: dict[str, Callable[[Envelope, Any], Event]] = {
    "chatMsg": _chat,
    "pm": _chat,
    "userlist": _userlist,
    "addUser": lambda env, p: UserJoinEvent(env, _user(p)),
    "userLeave": lambda env, p: UserLeaveEvent(env, _name(_obj(p, "userLeave"))),
    "setUserRank": _rank,
    "setAFK": _afk,
    "changeMedia": _media,
    "setCurrent": lambda env, p: CurrentEvent(env, integer(p, "setCurrent payload", 0, MAX_UID)),
    "mediaUpdate": _media_update,
    "cooldown": lambda env, p: CooldownEvent(env, cooldown_ms(p)),
    "noflood": _noflood,
}
