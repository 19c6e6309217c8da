"""The bot taking part in the evening: the one object the intake asks beyond its triggers.

It holds, per channel, what the pipeline stages of :mod:`kryten_llm.pipeline.share`,
:mod:`~kryten_llm.pipeline.participation`, :mod:`~kryten_llm.pipeline.followup` and
:mod:`~kryten_llm.pipeline.media` need to remember, and answers the intake's questions:

- :meth:`Conversation.seen`: a chat line appeared (the share's denominator);
- :meth:`Conversation.choose`: a line that fired no trigger may be a follow-up (addressed) or
  a chance to join in;
- :meth:`Conversation.refusal`: the share budget, which unasked replies give way to first
  (mentions and PMs are never held back by it);
- :meth:`Conversation.reserve` and :meth:`Conversation.annotate`: room held for an approved
  reply, and what the reply turned out to be (parts sent, to whom), from the response log;
- :meth:`Conversation.on_media`: a new video, and whether it gets a comment.

Settings are read at each call from the object the caller hands in (a reload or a channel's
own character swaps it), except two read once: each channel's ``share_window_messages`` (its
window is sized on the channel's first line) and where video titles are remembered
(``media_change.enabled``, ``memory``, ``memory_file``, ``kv_bucket``: the store opens at
start). A reload reports those as needing a restart. Everything runs in the NATS
callback or a response-log write and is in-memory, except :meth:`on_media`, which reads and
claims in NATS KV (or a file) within :data:`KV_TIMEOUT` seconds: a video change is rare and
its comment is not urgent.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from kryten_llm.bus.claims import ClaimStore, FileClaimStore, set_aside
from kryten_llm.bus.events import ChatEvent, MediaEvent
from kryten_llm.cluster.kv import replicas_for
from kryten_llm.cluster.seen import KVClaimStore, claim_key
from kryten_llm.config.runtime import channel_key
from kryten_llm.errors import StoreError
from kryten_llm.pipeline.decisions import Reason, TriggerMatch
from kryten_llm.pipeline.followup import FollowUps
from kryten_llm.pipeline.media import MediaComments, MediaSkip, up_next
from kryten_llm.pipeline.participation import Participation
from kryten_llm.pipeline.prompt import PromptInput
from kryten_llm.pipeline.share import ShareTracker

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

    from kryten_llm.config import ChannelConfig, ParticipationConfig, Settings
    from kryten_llm.pipeline.outcome import Outcome
    from kryten_llm.pipeline.state import ChannelState

log = structlog.get_logger(__name__)

KV_TIMEOUT = 2.0
SHARE_LIMIT = "share_budget"
UNASKED = frozenset({"word", "join", "media"})
FOLLOWUP = "followup"
# Lines the channel did not show to everyone (or showed before): not part of its chat.
_NOT_CHAT = frozenset(
    {
        Reason.OWN_MESSAGE,  # the bot's lines count when sent, not when echoed
        Reason.SERVER_NOTICE,
        Reason.SHADOW_MUTED,
        Reason.REPLAY,
        Reason.DUPLICATE,
    }
)


@dataclass(slots=True)
class _Talk:
    """What one channel's conversation remembers."""

    share: ShareTracker
    join: Participation
    media: MediaComments
    followups: FollowUps = field(default_factory=FollowUps)
    last_engaged: float | None = None  # the bot spoke or was addressed (monotonic)


@dataclass(frozen=True, slots=True)
class MediaComment:
    """A video comment to submit like a triggered message."""

    chat: ChatEvent
    prompt: PromptInput


def unasked_limit(config: ParticipationConfig) -> float:
    """The share unasked replies stop at: the budget less the headroom kept for mentions."""
    return config.share_budget * (1 - config.share_headroom)


class Conversation:
    """Share, joining in, follow-ups and video comments of every channel.

    Args:
        rng: randomness for joining in and video comments (seed it for reproducible runs).
        clock: monotonic seconds, for windows and cooldowns.
        wall: wall-clock seconds, for claims that outlive the process.
    """

    def __init__(
        self,
        rng: random.Random | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._rng = rng or random.Random()
        self._clock = clock
        self._wall = wall
        self._talks: dict[str, _Talk] = {}
        self._claims: ClaimStore | None = None
        self._nc: NATS | None = None

    def _talk(self, key: str, settings: Settings) -> _Talk:
        talk = self._talks.get(key)
        if talk is None:
            talk = self._talks[key] = _Talk(
                ShareTracker(settings.participation.share_window_messages),
                Participation(self._rng),
                MediaComments(self._rng),
            )
        return talk

    # --- the share -------------------------------------------------------------------------

    def seen(self, key: str, reason: Reason | None, settings: Settings) -> None:
        """A public chat line arrived (``reason``: why the intake ignores it, if it does)."""
        if reason not in _NOT_CHAT:
            self._talk(key, settings).share.add()

    def shares(self) -> dict[str, float]:
        """The bot's share of each channel's chat now, by channel key."""
        return {key: talk.share.share for key, talk in self._talks.items()}

    def refusal(self, key: str, trigger: TriggerMatch, settings: Settings) -> str | None:
        """``share_budget`` when an unasked reply would take the bot over its share, else None.

        Mentions, follow-ups and PMs are never refused here; the budget holds while
        participation is enabled.
        """
        config = settings.participation
        if not config.enabled or trigger.kind not in UNASKED:
            return None
        share = self._talk(key, settings).share
        if share.fits(settings.formatting.max_parts, unasked_limit(config)):
            return None
        return SHARE_LIMIT

    def reserve(self, key: str, chat: ChatEvent, settings: Settings) -> None:
        """Hold room for an approved public reply until its outcome is written."""
        if not chat.is_pm:
            share = self._talk(key, settings).share
            share.reserve(
                _held_as(chat.envelope.correlation_id, chat.username, chat.text),
                settings.formatting.max_parts,
            )

    def annotate(self, outcome: Outcome) -> Outcome:
        """Learn from a response-log line what was said; stamp the channel's share on it.

        Called for every outcome before it is written (see ``ResponseLog.add_annotator``).
        """
        talk = self._talks.get(channel_key(outcome.domain, outcome.channel))
        if talk is None or outcome.kind == "pm":
            return outcome
        sent = len(outcome.parts or ()) if outcome.answered else 0
        talk.share.settle(_held_as(outcome.correlation_id, outcome.username, outcome.input), sent)
        if sent:
            now = self._clock()
            talk.last_engaged = now
            if outcome.username and outcome.parts:
                talk.followups.answered(outcome.username, outcome.parts, now)
        return replace(outcome, chat_share=round(talk.share.share, 4))

    # --- follow-ups and joining in ---------------------------------------------------------

    def choose(
        self,
        key: str,
        chat: ChatEvent,
        trigger: TriggerMatch | None,
        settings: Settings,
        present: Collection[str],
    ) -> TriggerMatch | None:
        """The trigger for a public chat line: the engine's, a follow-up, a join, or none."""
        talk = self._talk(key, settings)
        now = self._clock()
        followups = settings.followups
        if followups.enabled and (trigger is None or trigger.kind == "word"):
            how = talk.followups.match(
                followups,
                username=chat.username,
                text=chat.text,
                css_class=chat.css_class,
                bot_account=settings.bot.username,
                now=now,
            )
            if how is not None:
                log.info("followup_detected", username=chat.username, how=how)
                trigger = TriggerMatch("mention", FOLLOWUP, settings.triggers.mention_priority)
        if trigger is not None:
            if trigger.kind == "mention":
                talk.last_engaged = now
            return trigger
        return self._join(talk, chat, settings, present, now)

    def _join(
        self,
        talk: _Talk,
        chat: ChatEvent,
        settings: Settings,
        present: Collection[str],
        now: float,
    ) -> TriggerMatch | None:
        """Join in unasked? Within the cap and the share first (no roll is wasted on a no)."""
        config = settings.participation
        if not config.enabled or talk.join.capped(config, now):
            return None
        if not talk.share.fits(settings.formatting.max_parts, unasked_limit(config)):
            return None
        since = math.inf if talk.last_engaged is None else now - talk.last_engaged
        chance = talk.join.chance(config, since_engaged=since, text=chat.text, present=present)
        if not talk.join.roll(chance):
            return None
        talk.join.joined(now)
        log.info("joining_in", username=chat.username, chance=round(chance, 4))
        return TriggerMatch("join", "join")

    @staticmethod
    def template_for(trigger: TriggerMatch, settings: Settings) -> str | None:
        """The template a trigger of ours brings (joining in); ``None``: the usual one."""
        return settings.participation.template if trigger.kind == "join" else None

    # --- video changes ---------------------------------------------------------------------

    async def start(self, nc: NATS | None, settings: Settings) -> None:
        """Open the title memory (KV when JetStream answers, else the file) if comments are on.

        A claims file that cannot be read is reported with its path and set aside; the bot
        starts with an empty memory rather than not at all.
        """
        self._nc = nc
        config = settings.media_change
        if not config.enabled:
            return
        if nc is not None and config.memory in ("auto", "kv"):
            try:
                async with asyncio.timeout(KV_TIMEOUT):
                    self._claims = await KVClaimStore.open(
                        nc,
                        config.kv_bucket,
                        window=config.repeat_window_seconds,
                        replicas=replicas_for(nc, settings.cluster.replicas),
                    )
            except Exception as exc:
                log.warning(
                    "media_memory_kv_unavailable",
                    bucket=config.kv_bucket,
                    error=str(exc) or type(exc).__name__,
                    fallback=str(config.memory_file),
                )
        if self._claims is None:
            self._claims = self._open_file(config.memory_file)
        log.info("media_memory_ready", where=self._claims.where)

    @staticmethod
    def _open_file(file: Path) -> ClaimStore:
        try:
            return FileClaimStore.open(file)
        except StoreError as exc:
            moved = set_aside(file)
            log.error(
                "media_memory_unreadable",
                path=str(exc.path),
                problem=exc.problem,
                moved_to=str(moved) if moved else None,
                fix="starting with an empty memory; the old file was kept for a look",
            )
            return FileClaimStore(file, {})

    async def on_media(
        self, channel: ChannelConfig, state: ChannelState, media: MediaEvent, settings: Settings
    ) -> MediaComment | None:
        """A comment to submit for the video that just started, or ``None`` (logged why)."""
        config = settings.media_change
        talk = self._talk(channel.key, settings)
        now = self._clock()
        verdict = talk.media.decide(config, media, now)
        skip = verdict.skip
        if skip is None and self.refusal(channel.key, _MEDIA, settings) is not None:
            skip = MediaSkip.SHARE_BUDGET
        if skip is None and not await self._claim(channel, media, config.repeat_window_seconds):
            skip = MediaSkip.SEEN
        if skip is not None:
            if skip is not MediaSkip.DISABLED:
                log.info("media_not_commented", channel=channel.channel, why=skip.value)
            return None
        talk.media.commented(now)
        chat = ChatEvent(
            envelope=media.envelope,
            username="",
            text=media.title,
            raw="",
            time_ms=int(self._wall() * 1000),
        )
        following = await self._up_next(channel, state, media, config.up_next)
        prompt = PromptInput(
            username="",
            text=media.title,
            trigger=_MEDIA,
            now_playing=state.now_playing,
            channel=channel.channel,
            users_present=len(state.users),
            template=config.template,
            up_next=following,
        )
        return MediaComment(chat, prompt)

    async def _claim(self, channel: ChannelConfig, media: MediaEvent, window: float) -> bool:
        """Claim the title for this channel; a store that fails says yes (and is logged)."""
        if self._claims is None:
            return True
        key = claim_key(channel.key, media.title)
        try:
            async with asyncio.timeout(KV_TIMEOUT):
                return await self._claims.claim(key, self._wall(), window)
        except Exception as exc:
            log.warning(
                "media_memory_failed", where=self._claims.where, error=str(exc) or repr(exc)
            )
            return True

    async def _up_next(
        self, channel: ChannelConfig, state: ChannelState, media: MediaEvent, count: int
    ) -> tuple[str, ...]:
        """What plays next, from the bridge's playlist bucket; () when it is not there."""
        if count <= 0 or self._nc is None:
            return ()
        uid = state.now_playing.uid if state.now_playing is not None else None
        try:
            async with asyncio.timeout(KV_TIMEOUT):
                kv = await self._nc.jetstream().key_value(f"kryten_{channel.channel}_playlist")
                entry = await kv.get("items")
        except Exception as exc:  # no JetStream, no bucket, no key: nothing to say about it
            log.debug("playlist_unavailable", error=str(exc) or type(exc).__name__)
            return ()
        return up_next(entry.value or b"", uid=uid, media_id=media.media_id, count=count)


_MEDIA = TriggerMatch("media", "media_change")


def _held_as(correlation_id: str, username: str, text: str) -> str:
    """The key a reply's room is held under: its message's id, sender and text, so that a
    refusal of another message sent with the same (or an empty) id releases nothing."""
    return f"{correlation_id}\x00{username}\x00{text}"
