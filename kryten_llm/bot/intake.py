"""The NATS callback's work for one channel event: parse, update state, decide, enqueue.

This runs for every event of every channel and must never wait on anything slow: it parses the
envelope, folds the event into the channel state, runs the intake filters and the trigger engine
(all in memory), and hands a triggered message to the :mod:`~kryten_llm.bot.admission` (claim,
share budget, rate limits; in the channel's lane when that may wait on JetStream), which puts a
:class:`~kryten_llm.pipeline.jobs.Job` on the bounded queue. The LLM call happens in a worker.
A malformed payload is logged with its subject, counted and dropped; nothing raised here
reaches nats-py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import structlog

from kryten_llm.bot.admission import Admission
from kryten_llm.bus.events import ChatEvent, CooldownEvent, MediaEvent, NoFloodEvent, parse_event
from kryten_llm.errors import MalformedEvent
from kryten_llm.pipeline.decisions import Reason, TriggerMatch
from kryten_llm.pipeline.outcome import Outcome
from kryten_llm.pipeline.prompt import PromptInput
from kryten_llm.pipeline.stats import Count

if TYPE_CHECKING:
    from kryten_llm.bot.character import Character
    from kryten_llm.bot.conversation import Conversation
    from kryten_llm.bot.responselog import ResponseLog
    from kryten_llm.bus.sender import ChatSender
    from kryten_llm.config import ChannelConfig, Settings, TriggersConfig
    from kryten_llm.memory.live import Memory
    from kryten_llm.pipeline.filters import IntakeFilter
    from kryten_llm.pipeline.jobs import JobQueue
    from kryten_llm.pipeline.spam import SpamGuard
    from kryten_llm.pipeline.state import ChannelState, HistoryLine
    from kryten_llm.pipeline.stats import Flags, Stats

log = structlog.get_logger(__name__)
_Rest = Coroutine[Any, Any, None]  # what is left of an event's handling, when anything is

# Ignored messages that name the bot get a response-log line saying why.
_EXPLAINED = frozenset({Reason.IGNORED_USER, Reason.OTHER_BOT, Reason.COMMAND, Reason.SHADOW_MUTED})
# Replayed history is context worth keeping; these other ignored lines are not.
_NOT_HISTORY = frozenset(
    {Reason.SERVER_NOTICE, Reason.SHADOW_MUTED, Reason.DUPLICATE, Reason.COMMAND, Reason.EMPTY}
)


@dataclass(slots=True)
class ChannelContext:
    """One configured channel: its config, its state and the character the bot is there.

    ``config`` and ``character`` are replaced together when settings change; ``state``
    lives as long as the process.
    """

    config: ChannelConfig
    state: ChannelState
    character: Character
    foreign_domains_warned: bool = False


class Intake:
    """Turns raw channel events into state updates and queued reply jobs."""

    def __init__(
        self,
        settings: Settings,
        *,
        intake_filter: IntakeFilter,
        spam: SpamGuard,
        queue: JobQueue,
        sender: ChatSender | None,
        response_log: ResponseLog,
        stats: Stats,
        flags: Flags,
        conversation: Conversation,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bot = settings.bot.username
        self._spam = spam
        self._sender = sender
        self._log = response_log
        self._stats = stats
        self._flags = flags
        self._conversation = conversation  # conv14: share, joining in, follow-ups, videos
        self._clock = clock
        self._filter = intake_filter
        # The claim, share budget and rate limits: may wait on JetStream, so not in here.
        self.admission = Admission(
            settings,
            queue=queue,
            response_log=response_log,
            stats=stats,
            flags=flags,
            conversation=conversation,
            closed=self._closed,
            clock=clock,
        )
        self.reconfigure(settings)
        self.accepting = True
        self.memory: Memory | None = None  # memory (issue 14): set by the assembly when on
        self._media_tasks: set[asyncio.Task[None]] = set()

    def reconfigure(self, settings: Settings) -> None:
        """Decide with ``settings`` from the next event on (a reload or runtime change)."""
        self._filter.reconfigure(settings.filters)
        self.admission.reconfigure(settings)
        self._prompt_history = settings.processing.prompt_history

    def handle(self, channel: ChannelContext, subject: str, data: bytes) -> _Rest | None:
        """Process one message from ``kryten.events.cytube.<channel>.>``; never raises.

        Ordinary chat, nearly all of the traffic, is done when this returns ``None`` (no
        coroutine: ~0.1 µs each); a message that goes on comes back as a coroutine that
        finishes it and never raises either (awaited by ``subscribe_events``' callback).

        A payload that is not the bridge's envelope is counted and logged in one line; any
        other failure is a bug of ours, logged with its traceback and counted, and the next
        event is handled as usual.
        """
        totals = self._stats.totals
        totals[_EVENTS] += 1
        try:
            event = parse_event(subject, data)
        except MalformedEvent as exc:
            totals[Count.EVENTS_MALFORMED] += 1
            log.warning("event_malformed", subject=exc.subject, reason=exc.reason)
            return None
        except Exception:
            totals[Count.EVENTS_FAILED] += 1
            log.exception("event_handling_failed", subject=subject)
            return None
        kind = type(event)
        self._stats.event_types[_EVENT_NAMES.get(kind) or _event_name(kind)] += 1
        try:
            if event.envelope.domain != channel.config.domain:
                self._foreign(channel, event.envelope.domain)
                return None
            if isinstance(event, ChatEvent):
                rest = self._on_chat(channel, event)
                return None if rest is None else self._guarded(rest, subject)
            if isinstance(event, CooldownEvent):
                if self._sender is not None:
                    self._sender.on_cooldown(channel.config, event.milliseconds)
            elif isinstance(event, NoFloodEvent):
                if self._sender is not None:
                    self._sender.on_noflood(channel.config)
            else:
                channel.state.apply(event)
                if isinstance(event, MediaEvent):  # conv14: may wait on NATS KV, so apart
                    task = asyncio.create_task(self._on_media(channel, event))
                    self._media_tasks.add(task)
                    task.add_done_callback(self._media_tasks.discard)
        except Exception:
            totals[Count.EVENTS_FAILED] += 1
            log.exception("event_handling_failed", subject=subject)
        return None

    async def _guarded(self, rest: _Rest, subject: str) -> None:
        """``rest`` of an event's handling, failures logged and counted as in :meth:`handle`."""
        try:
            await rest
        except Exception:
            self._stats.totals[Count.EVENTS_FAILED] += 1
            log.exception("event_handling_failed", subject=subject)

    def _foreign(self, channel: ChannelContext, domain: str) -> None:
        """Same channel name on another domain: not ours, and the bridge would refuse us."""
        self._stats.totals[Count.EVENTS_FOREIGN_DOMAIN] += 1
        if not channel.foreign_domains_warned:
            channel.foreign_domains_warned = True
            log.warning(
                "event_from_other_domain",
                channel=channel.config.channel,
                configured_domain=channel.config.domain,
                event_domain=domain,
                fix="set channels[].domain exactly as the bridge has it if this is your channel",
            )

    def _on_chat(self, channel: ChannelContext, chat: ChatEvent) -> _Rest | None:
        """Filters, state and triggers; the coroutine deciding the rest, for a line that goes on."""
        self._stats.totals[_CHAT] += 1
        state = channel.state
        character = channel.character  # one character decides the whole message
        state.last_event_at = self._clock()
        reason = self._filter.check(chat)
        key = channel.config.key
        if chat.to is None:  # public chat (is_pm, without the property call)
            self._conversation.seen(key, reason, character.settings)  # conv14
        if reason is not None:
            self._stats.ignored[reason] += 1
            if reason in _EXPLAINED and (chat.is_pm or character.triggers.is_mention(chat.text)):
                # Someone addressed the bot and gets no answer: say why in the response log.
                self._log.write(Outcome.of(channel.config, chat, _MENTION, reason))
            if reason is Reason.OWN_MESSAGE and not chat.is_pm:
                state.add_chat(chat.username, chat.text, chat.time_ms, from_bot=True)
            elif reason not in _NOT_HISTORY and not chat.is_pm:
                state.add_chat(chat.username, chat.text, chat.time_ms)
            return None
        history: tuple[HistoryLine, ...] = ()
        if chat.to is not None:
            trigger = self._pm_trigger(chat, character.settings.triggers)
        else:
            trigger = character.triggers.match(chat.text)
            # conv14: a follow-up counts as a mention; a line nobody aimed at may be joined
            trigger = self._conversation.choose(key, chat, trigger, character.settings, state.users)
            # The triggering message is put in the prompt separately: the history is taken
            # before the line joins it, and only for a line that goes on (the copy costs).
            history = tuple(state.recent(self._prompt_history)) if trigger is not None else ()
            state.add_chat(chat.username, chat.text, chat.time_ms)
            if trigger is None:
                return None  # ordinary chat: nothing below applies to a public line nobody aimed at
        return self._decide(channel, chat, character, trigger, history)

    async def _decide(
        self,
        channel: ChannelContext,
        chat: ChatEvent,
        character: Character,
        trigger: TriggerMatch | None,
        history: tuple[HistoryLine, ...],
    ) -> None:
        """Spam, memory and pause for a message that may be answered; then the admission."""
        state = channel.state
        rank = state.rank_of(chat.username)
        # A mention always fires (it never misses a roll), so no trigger means no mention:
        # ordinary chat pays for no second regex here.
        aimed = chat.is_pm or (
            trigger is not None
            and (trigger.kind == "mention" or character.triggers.is_mention(chat.text))
        )
        if aimed:
            # Every message aimed at the bot counts towards spam, answered or not.
            verdict = self._spam.check(
                chat.username, chat.text, rank=rank, present=state.users.keys()
            )
            if not verdict.allowed and trigger is not None:
                self._stats.decisions[Reason.SPAM] += 1
                log.info("spam_ignored", username=chat.username, offence=verdict.offence)
                self._log.write(
                    replace(
                        Outcome.of(channel.config, chat, trigger, Reason.SPAM, rank=rank),
                        offence=verdict.offence or "penalised",
                        strikes=verdict.strikes,
                        retry_after=round(verdict.retry_after, 3),
                    )
                )
                return
        # memory (issue 14): "remember ..." is stored; "forget me" is handled there, no reply.
        if (
            aimed
            and trigger is not None
            and self.memory is not None
            and self.memory.take(
                channel.config,
                chat,
                rank=rank,
                settings=character.settings,
                state=state,
                trigger=trigger,
            )
        ):
            return
        if trigger is None:
            return
        self._stats.totals[Count.TRIGGERED] += 1
        self._stats.triggers[trigger.kind] += 1
        closed = self._closed()
        if closed is not None:
            self.admission.refuse(channel.config, chat, trigger, closed)
            return
        prompt = PromptInput(
            username=chat.username,
            text=chat.text,
            trigger=trigger,
            history=() if chat.is_pm else history,
            now_playing=state.now_playing,
            is_pm=chat.is_pm,
            channel=channel.config.channel,
            users_present=len(state.users),
            template=self._conversation.template_for(trigger, character.settings),  # conv14
            memory=(  # memory (issue 14): the notes this reply may recall
                self.memory.recall(channel.config, chat.username, trigger, character.settings)
                if self.memory is not None
                else ()
            ),
        )
        await self.admission.submit(channel.config, character, chat, prompt, rank)

    async def _on_media(self, channel: ChannelContext, media: MediaEvent) -> None:
        """conv14: a new video may get a comment, submitted like a triggered message.

        Runs as a task of its own (the title's memory may be in NATS KV): the channel's next
        events do not wait for it. A failure is logged and counted like a failed event.
        """
        try:
            await self._comment_on(channel, media)
        except Exception:
            self._stats.totals[Count.EVENTS_FAILED] += 1
            log.exception("media_comment_failed", channel=channel.config.channel)

    async def _comment_on(self, channel: ChannelContext, media: MediaEvent) -> None:
        if self._closed() is not None:
            return
        character = channel.character
        comment = await self._conversation.on_media(
            channel.config, channel.state, media, character.settings
        )
        if comment is not None:
            self._stats.totals[Count.TRIGGERED] += 1
            self._stats.triggers[comment.prompt.trigger.kind] += 1
            await self.admission.submit(
                channel.config, character, comment.chat, comment.prompt, None
            )

    def _pm_trigger(self, chat: ChatEvent, triggers: TriggersConfig) -> TriggerMatch | None:
        if not triggers.private_messages:
            return None
        if (chat.to or "").lower() != self._bot.lower():
            return None
        return TriggerMatch(kind="pm", name="pm", priority=triggers.mention_priority)

    def _closed(self) -> Reason | None:
        """Why no message is admitted now, if not: paused, or shutting down."""
        if not self.accepting:
            return Reason.SHUTDOWN
        return Reason.PAUSED if self._flags.paused else None


_MENTION = TriggerMatch("mention", "mention")
_EVENT_NAMES: dict[type, str] = {}
# Read once: each ``Count.X`` is an enum attribute lookup (~60 ns), paid per event otherwise.
_EVENTS, _CHAT = Count.EVENTS, Count.CHAT


def _event_name(kind: type) -> str:
    """The counter name of an event type, built once per type: ``ChatEvent`` -> ``chat``.

    The NATS callback then pays a dict lookup per event, not string work.
    """
    name = _EVENT_NAMES.get(kind)
    if name is None:
        name = _EVENT_NAMES[kind] = kind.__name__.removesuffix("Event").lower()
    return name
