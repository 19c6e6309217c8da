"""Video changes: whether the bot comments on a new video, and what the prompt says about it.

On ``changeMedia`` the bot may comment (``media_change`` section): only when enabled, for a
video at least ``min_duration_seconds`` long, not within ``cooldown_seconds`` of its last video
comment in the channel, when the ``probability`` roll succeeds, and never twice on the same
title within ``repeat_window_seconds`` (that memory is a claim in
:mod:`kryten_llm.bus.claims`, taken last, by the caller, once everything else said yes).

What plays next comes from the bridge's KV bucket ``kryten_<Channel>_playlist`` (PROTOCOL.md
§8): key ``items`` holds the playlist, each item ``{"media": {"title", ...}, "uid", ...}``; the
next items follow the one whose ``uid`` is playing (``setCurrent``), or whose media id is. Titles
and playlist entries are untrusted text: bounded here, quoted as chat is in the prompt.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from kryten_llm.bus.wire import Bad, clean_text, load_body

if TYPE_CHECKING:
    from kryten_llm.bus.events import MediaEvent
    from kryten_llm.config import MediaChangeConfig

MAX_PLAYLIST_ITEMS = 5_000  # looked at; a longer playlist is cut (what plays next is near)
MAX_TITLE_CHARS = 200  # CyTube cuts titles at 100; a hostile bridge or playlist may not


class MediaSkip(StrEnum):
    """Why a new video got no comment. Values are stable log vocabulary."""

    DISABLED = "disabled"
    SHORT = "short"
    COOLDOWN = "cooldown"
    NOT_ROLLED = "not_rolled"
    SEEN = "seen"
    SHARE_BUDGET = "share_budget"


@dataclass(frozen=True, slots=True)
class MediaVerdict:
    """Whether to comment (``skip`` is ``None``) or why not."""

    skip: MediaSkip | None


def bounded_title(title: str, limit: int = MAX_TITLE_CHARS) -> str:
    """``title`` on one line, cut to ``limit`` characters (with an ellipsis when cut)."""
    one_line = " ".join(clean_text(title).split())
    return one_line if len(one_line) <= limit else one_line[: limit - 1].rstrip() + "…"


class MediaComments:
    """The video-comment decision of one channel (cooldown and roll; claims are the caller's).

    Args:
        rng: the randomness for ``probability`` (seed it for reproducible runs).
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._last_comment: float | None = None

    def decide(self, config: MediaChangeConfig, media: MediaEvent, now: float) -> MediaVerdict:
        """Everything but the title memory and the share budget, in the order that is cheapest."""
        if not config.enabled:
            return MediaVerdict(MediaSkip.DISABLED)
        if media.seconds < config.min_duration_seconds:
            return MediaVerdict(MediaSkip.SHORT)
        last = self._last_comment
        if last is not None and now - last < config.cooldown_seconds:
            return MediaVerdict(MediaSkip.COOLDOWN)
        if config.probability < 1.0 and self._rng.random() >= config.probability:
            return MediaVerdict(MediaSkip.NOT_ROLLED)
        return MediaVerdict(None)

    def commented(self, now: float) -> None:
        """A comment was queued: the cooldown starts."""
        self._last_comment = now


def up_next(items_json: bytes, *, uid: int | None, media_id: str, count: int) -> tuple[str, ...]:
    """The titles after the current item in the bridge's playlist, bounded; () when unknown.

    Args:
        items_json: the value of key ``items`` in ``kryten_<Channel>_playlist``.
        uid: the playing item's uid from ``setCurrent`` (``None`` if not seen).
        media_id: the playing video's id, used when the uid is unknown.
        count: how many titles at most (each bounded to :data:`MAX_TITLE_CHARS`).
    """
    try:
        items = load_body(items_json)
    except Bad:
        return ()
    if not isinstance(items, list):
        return ()
    items = items[:MAX_PLAYLIST_ITEMS]
    at = next((i for i, item in enumerate(items) if _is_current(item, uid, media_id)), None)
    if at is None:
        return ()
    titles = (_title(item) for item in items[at + 1 :])
    return tuple(bounded_title(t) for t in titles if t)[:count]


def _is_current(item: Any, uid: int | None, media_id: str) -> bool:
    if not isinstance(item, dict):
        return False
    if uid is not None:
        return item.get("uid") == uid
    media = item.get("media")
    return isinstance(media, dict) and bool(media_id) and media.get("id") == media_id


def _title(item: Any) -> str:
    if not isinstance(item, dict):
        return ""
    media = item.get("media")
    title = media.get("title") if isinstance(media, dict) else item.get("title")
    return title if isinstance(title, str) else ""
