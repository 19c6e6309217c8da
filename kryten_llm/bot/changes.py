"""Runtime changes as overrides: what an operator may change while the bot runs, and how.

Each change an operator asks for (``trigger``, ``ratelimit``, ``personality``, ``providers``)
becomes one or more :class:`~kryten_llm.config.overrides.Override` entries at the key paths
where that value is configured (a channel's own section, else the top level). Unknown triggers,
channels, personalities, providers and fields are refused here with the names that exist;
values are then checked by the settings models when :mod:`kryten_llm.bot.tuning` applies them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from kryten_llm.config.overrides import KeyPath, Override
from kryten_llm.config.settings import Settings
from kryten_llm.errors import ControlError

_TRIGGER_FIELDS = frozenset(
    {"enabled", "probability", "cooldown_seconds", "max_per_hour", "context"}
)


def trigger_overrides(settings: Settings, value: Any, origin: str) -> list[Override]:
    """``{"name": ..., "channel"?: ..., "probability"?: ...}`` as overrides.

    Raises:
        ControlError: an unknown trigger, channel or field.
    """
    body = _object(value, "trigger", '{"name": "popcorn", "probability": 0.5}')
    name = body.pop("name", None)
    base, triggers = _section_of(settings, body.pop("channel", None), "triggers")
    known = [word.name for word in triggers.words]
    if name not in known:
        raise ControlError(400, f"no trigger word {name!r}; configured: {', '.join(known)}")
    unknown = sorted(set(body) - _TRIGGER_FIELDS)
    if unknown or not body:
        raise ControlError(
            400, f"trigger changes {', '.join(sorted(_TRIGGER_FIELDS))}; got {unknown or 'none'}"
        )
    return [_override((*base, "words", name, key), v, origin) for key, v in body.items()]


def ratelimit_overrides(settings: Settings, value: Any, origin: str) -> list[Override]:
    """``{"channel"?: ..., "user_cooldown_seconds": 10, ...}`` as overrides.

    Raises:
        ControlError: an unknown channel or field.
    """
    body = _object(value, "ratelimit", '{"user_cooldown_seconds": 10}')
    base, limits = _section_of(settings, body.pop("channel", None), "ratelimit")
    unknown = sorted(set(body) - set(type(limits).model_fields))
    if unknown or not body:
        fields = ", ".join(type(limits).model_fields)
        raise ControlError(400, f"ratelimit changes {fields}; got {unknown or 'none'}")
    return [_override((*base, key), v, origin) for key, v in body.items()]


def personality_overrides(settings: Settings, value: Any, origin: str) -> list[Override]:
    """``"critic"`` or ``{"name": "critic", "channel"?: ...}`` as an override.

    Raises:
        ControlError: an unknown personality or channel.
    """
    body = {"name": value} if isinstance(value, str) else _object(value, "personality", '"critic"')
    name = body.get("name")
    if name not in settings.personalities:
        known = ", ".join(sorted(settings.personalities))
        raise ControlError(400, f"no personality {name!r}; configured: {known}")
    channel = body.get("channel")
    if channel is None:
        return [_override(("active_personality",), name, origin)]
    return [_override(("channels", _channel_key(settings, channel), "personality"), name, origin)]


def provider_overrides(settings: Settings, value: Any, origin: str) -> list[Override]:
    """``{"order": ["a", "b"]}`` (or the list itself): the default, then the fallbacks.

    Raises:
        ControlError: an empty order or an unknown provider.
    """
    order = value.get("order") if isinstance(value, dict) else value
    if not isinstance(order, list) or not order or not all(isinstance(n, str) for n in order):
        raise ControlError(400, 'providers takes {"order": ["first", "then", ...]}')
    unknown = [n for n in order if n not in settings.llm.providers]
    if unknown:
        known = ", ".join(sorted(settings.llm.providers))
        raise ControlError(400, f"unknown providers {unknown}; configured: {known}")
    return [
        _override(("llm", "default_provider"), order[0], origin),
        _override(("llm", "fallback"), order[1:], origin),
    ]


def triggers_view(settings: Settings) -> dict[str, Any]:
    """Every channel's character, trigger words and limits, as in force."""
    out: dict[str, Any] = {}
    for channel in settings.channels:
        effective = settings.for_channel(channel)
        out[channel.key] = {
            "personality": effective.active_personality,
            "mentions": effective.triggers.mentions,
            "words": [w.model_dump(mode="json") for w in effective.triggers.words],
            "ratelimit": effective.ratelimit.model_dump(mode="json"),
            "own": [s for s in ("triggers", "ratelimit", "formatting") if getattr(channel, s)],
        }
    return out


CHANGES: dict[str, Callable[[Settings, Any, str], list[Override]]] = {
    "trigger": trigger_overrides,
    "ratelimit": ratelimit_overrides,
    "personality": personality_overrides,
    "providers": provider_overrides,
}


def _object(value: Any, action: str, example: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ControlError(400, f"{action} takes an object, e.g. {example}")
    return dict(value)


def _channel_key(settings: Settings, wanted: Any) -> str:
    for channel in settings.channels:
        if wanted in (channel.key, channel.channel) or str(wanted).lower() == channel.key:
            return channel.key
    known = ", ".join(c.key for c in settings.channels)
    raise ControlError(400, f"no channel {wanted!r}; configured: {known}")


def _section_of(settings: Settings, channel: Any, section: str) -> tuple[KeyPath, Any]:
    """Where ``section`` is configured for ``channel`` (its own, else the top level)."""
    if channel is None:
        return (section,), getattr(settings, section)
    key = _channel_key(settings, channel)
    config = next(c for c in settings.channels if c.key == key)
    if getattr(config, section) is None:
        raise ControlError(
            400,
            f"channel {key} uses the top-level {section}: leave out channel to change it "
            f"(or give the channel its own {section} in the config file)",
        )
    return ("channels", key, section), getattr(config, section)


def _override(path: KeyPath, value: Any, origin: str) -> Override:
    return Override(path, value, origin, now())


def now() -> str:
    """The time of a change, as recorded with it (ISO 8601, UTC)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
