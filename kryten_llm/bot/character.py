"""How the bot behaves in one channel: its character, built from that channel's settings.

One bot account can be a different character in each channel (``channels[].personality``, with
the channel's own ``triggers``, ``ratelimit`` and ``formatting`` if it sets them). A
:class:`Character` holds the parts built from one channel's effective settings
(:meth:`Settings.for_channel`): the trigger engine (its names are the mention names), the rate
limiter it counts against, and the responder that speaks as it.

A character is never changed, only replaced: a reload or runtime change builds new ones and
puts them in place between two messages, so a reply already being produced finishes with the
character it started with. The state that must outlive a reload (rate-limit windows, recent
replies, spam strikes) lives outside, in objects the new character is handed again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kryten_llm.bot.replypath import ReplyPath
    from kryten_llm.config import Settings
    from kryten_llm.pipeline.ratelimit import RateLimiter
    from kryten_llm.pipeline.triggers import TriggerEngine


@dataclass(frozen=True, slots=True)
class Character:
    """The parts that decide and answer in one channel.

    Attributes:
        personality: the key of the personality spoken as.
        settings: the channel's effective settings (see :meth:`Settings.for_channel`).
        triggers: matches this character's names and trigger words.
        limiter: the limits this channel counts against (shared unless it has its own).
        reply: produces the replies; ``None`` while the bot only listens.
    """

    personality: str
    settings: Settings
    triggers: TriggerEngine
    limiter: RateLimiter
    reply: ReplyPath | None = None
