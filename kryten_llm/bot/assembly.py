"""The one place where the bot's parts are built from :class:`~kryten_llm.config.Settings`.

Everything that decides whether to answer and produces the answer is put together here:
channel state, intake (filters, spam guard), fallback pools and one character per channel
(triggers, rate limiter and, through :mod:`kryten_llm.bot.replypath`, the prompt builder,
validator and responder); and put together again, keeping all state, when settings change. The live
service (:mod:`kryten_llm.service`) and the demo build a :class:`Bot`; ``kryten-llm batch
--pipeline`` builds the same reply path; so a change to how a reply is produced is made once,
here, and every path gets it. Providers are built by :func:`kryten_llm.llm.build_manager`, which
this module's callers pass in.

The service keeps only resources (NATS, HTTP session, logs) and lifecycle.
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

import structlog

from kryten_llm.bot.character import Character
from kryten_llm.bot.conversation import Conversation
from kryten_llm.bot.intake import ChannelContext, Intake
from kryten_llm.config import TriggersConfig
from kryten_llm.errors import ClusterError, ControlError
from kryten_llm.pipeline.decisions import Reason
from kryten_llm.pipeline.fallback import FallbackPools
from kryten_llm.pipeline.filters import IntakeFilter
from kryten_llm.pipeline.jobs import JobQueue
from kryten_llm.pipeline.ratelimit import RateLimiter
from kryten_llm.pipeline.spam import SpamGuard
from kryten_llm.pipeline.state import ChannelState
from kryten_llm.pipeline.stats import Count, Flags, Stats
from kryten_llm.pipeline.triggers import TriggerEngine

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

    from kryten_llm.bot.responder import Responder
    from kryten_llm.bot.responselog import ResponseLog
    from kryten_llm.bus.sender import ChatSender
    from kryten_llm.cluster import Coordinator
    from kryten_llm.cluster.spamshare import SharedSpamStrikes
    from kryten_llm.config import ChannelConfig, RateLimitConfig, Settings, TriggerWordConfig
    from kryten_llm.llm.manager import ProviderManager
    from kryten_llm.memory.live import Memory
    from kryten_llm.pipeline.jobs import Job
    from kryten_llm.pipeline.validator import RecentReplies

log = structlog.get_logger(__name__)


class Bot:
    """Every part of the live bot, built from ``settings`` in one place.

    The bot is built in two halves: this constructor builds the listening half (channel state,
    intake, queue, one :class:`~kryten_llm.bot.character.Character` per channel), enough to
    subscribe; :meth:`start_answering` adds the reply paths. :meth:`apply` puts new settings in
    force while running (a reload or a runtime change).

    Args:
        settings: the whole configuration.
        sender: sends to the bridge; ``None`` only logs.
        response_log: where outcomes are written.
        rng: randomness for trigger probabilities (seed it for reproducible runs).
        stats: the counters to count in (the service's own, so they exist before the bot).
        flags: the operator's switches (likewise).
        cluster: this instance's part among several (claims, shared limits); ``None``: alone.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        sender: ChatSender | None,
        response_log: ResponseLog,
        rng: random.Random | None = None,
        stats: Stats | None = None,
        flags: Flags | None = None,
        cluster: Coordinator | None = None,
    ) -> None:
        self.settings = settings
        self.stats = stats if stats is not None else Stats()
        self.flags = flags if flags is not None else Flags(dry_run=settings.dry_run)
        self.queue = JobQueue(settings.processing.queue_size)
        self.pools = FallbackPools.from_settings(settings)
        self.spam = SpamGuard(settings.spam)
        self.manager: ProviderManager | None = None
        self.in_flight = 0
        # cluster hook (issue 15): limits shared with the other instances when clustered
        self._shared_store = cluster.shared_limits if cluster is not None else None
        self._rng = rng
        self._sender = sender
        self._response_log = response_log
        self._recent: RecentReplies = {}  # outlives every validator a reload builds
        self._limiters: dict[str, RateLimiter] = {}
        self._update_limiters(settings)
        # Each channel's state lives as long as the process; reply paths read it by key.
        self._states = {
            c.key: ChannelState(settings.processing.history_size) for c in settings.channels
        }
        self.channels = {
            c.key: ChannelContext(c, self._states[c.key], self._character(settings, c))
            for c in settings.channels
        }
        # conv14: share of chat, joining in, follow-ups and video comments
        self.conversation = Conversation(rng)
        response_log.add_annotator(self.conversation.annotate)
        self.intake = Intake(
            settings,
            intake_filter=IntakeFilter(settings.filters, settings.bot.username),
            spam=self.spam,
            queue=self.queue,
            sender=sender,
            response_log=response_log,
            stats=self.stats,
            flags=self.flags,
            conversation=self.conversation,
        )
        # memory (issue 14): notes that survive restarts, off unless memory.enabled (and only
        # then imported: SQLite and the memory code stay out of a bot that does not use them)
        self.memory: Memory | None = None
        if settings.memory.enabled:
            from kryten_llm.memory import live as memory_live

            self.memory = memory_live.Memory.open(
                settings.memory,
                sender=sender,
                flags=self.flags,
                stats=self.stats,
                record=response_log.write,
            )
        self.intake.memory = self.memory
        self._memory_watch: asyncio.Task[None] | None = None
        self.intake.admission.cluster = cluster  # cluster hook (issue 15)
        self.spam_share: SharedSpamStrikes | None = None  # set by start() among several

    async def start(self, nc: NATS) -> None:
        """Open the state kept outside this process, before the bot subscribes: the memory of
        video titles and, among several instances, the spam strikes they share (so a spammer
        muted by the others is muted here from the first message)."""
        await self.conversation.start(nc, self.settings)  # conv14: title memory (KV or file)
        cluster = self.intake.admission.cluster
        if cluster is None or cluster.claims is None:  # alone: strikes stay in memory
            return
        from kryten_llm.cluster import kv, spamshare

        try:
            self.spam_share = await spamshare.SharedSpamStrikes.start(
                nc,
                self.spam,
                bucket=kv.bucket_name(self.settings.service.name, "spam"),
                replicas=cluster.replicas,
                retry_seconds=self.settings.cluster.claim_timeout_seconds,
            )
        except ClusterError as exc:
            log.warning(
                "spam_strikes_not_shared",
                error=str(exc),
                detail="this instance keeps its spam strikes to itself",
            )

    def start_answering(self, manager: ProviderManager) -> None:
        """Build the answering half around ``manager``; jobs queued so far are answered next.

        The reply path is imported here, not at the top: the bot listens to its channels
        before it and the providers behind it are loaded.
        """
        self.manager = manager
        if self.memory is not None:  # memory (issue 14): extraction and outside changes
            self.memory.attach(manager)
            self._memory_watch = asyncio.get_running_loop().create_task(
                self.memory.watch(lambda: self.settings.memory), name="memory-watch"
            )
        self._recharacter(self.settings)

    def apply(
        self,
        settings: Settings,
        *,
        manager: ProviderManager | None = None,
        pools: FallbackPools | None = None,
    ) -> None:
        """Put ``settings`` in force from the next message on, keeping every piece of state.

        History, rate-limit windows, spam strikes and recent replies are kept (changed limits
        apply to what follows); a reply being produced finishes with the character it started
        with. Channels are matched by key; settings that need a restart (see
        :mod:`kryten_llm.bot.tuning`) must already have been kept at their old values.

        Args:
            settings: the new, validated settings.
            manager: new providers, when the ``llm`` section changed.
            pools: new fallback pools, when the ``fallback`` section changed.
        """
        self.settings = settings
        if manager is not None:
            self.manager = manager
            if self.memory is not None:
                self.memory.attach(manager)
        if pools is not None:
            self.pools = pools
        self.spam.reconfigure(settings.spam)
        self.intake.reconfigure(settings)
        self._update_limiters(settings)
        self._recharacter(settings)

    def _recharacter(self, settings: Settings) -> None:
        for config in settings.channels:
            context = self.channels.get(config.key)
            if context is not None:
                context.config = config
                context.character = self._character(settings, config)

    def _character(self, settings: Settings, config: ChannelConfig) -> Character:
        effective = settings.for_channel(config)
        reply = None
        if self.manager is not None:
            from kryten_llm.bot.replypath import build_reply_path

            reply = build_reply_path(
                effective,
                self.manager,
                response_log=self._response_log,
                stats=self.stats,
                flags=self.flags,
                sender=self._sender,
                states=self._states,
                pools=self.pools,
                recent=self._recent,
            )
        return Character(
            personality=effective.active_personality,
            settings=effective,
            triggers=TriggerEngine(effective.triggers, effective.personality, rng=self._rng),
            limiter=self._limiters[config.key if config.ratelimit is not None else ""],
            reply=reply,
        )

    def _update_limiters(self, settings: Settings) -> None:
        """One limiter per channel with limits of its own, one shared by the others."""
        groups: dict[str, tuple[RateLimitConfig, dict[str, TriggerWordConfig]]] = {}
        for config in settings.channels:
            effective = settings.for_channel(config)
            key = config.key if config.ratelimit is not None else ""
            _, words = groups.setdefault(key, (effective.ratelimit, {}))
            words.update((word.name, word) for word in effective.triggers.words)
        for key, (limits, words) in groups.items():
            limiter = self._limiters.get(key)
            if limiter is None:
                self._limiters[key] = RateLimiter(
                    limits,
                    TriggersConfig(words=list(words.values())),
                    store=self._shared_store,
                    scope=f"{key}|" if key else "",  # a channel of its own counts apart
                )
            else:
                limiter.reconfigure(limits, words.values())

    async def clear_cooldowns(self) -> None:
        """Forget every rate-limit hit and every spam strike and mute, in every channel; among
        several instances, on every instance (the shared hits and standings too).

        Raises:
            ControlError: (503) JetStream failed to clear what the instances share; what this
                instance holds is cleared all the same.
        """
        self.spam.clear()
        clears = [limiter.clear() for limiter in self._limiters.values()]
        if self.spam_share is not None:
            clears.append(self.spam_share.clear())
        failed = [r for r in await asyncio.gather(*clears, return_exceptions=True) if r]
        if failed:
            raise ControlError(
                503,
                "cleared on this instance; not what the instances share: "
                + "; ".join(str(e) or type(e).__name__ for e in failed),
            )

    async def work(self) -> None:
        """One reply worker: answers queued jobs until cancelled; no job can end the loop.

        Each job is answered by its channel's character as it is when the job is taken.
        """
        while True:
            job = await self.queue.get()
            self.in_flight += 1
            try:
                await self._responder_for(job).handle(job)
            except Exception:  # handle() already logs its own failures; this is the last net
                self.stats.totals[Count.WORKER_ERRORS] += 1
                log.exception(
                    "reply_worker_error",
                    correlation_id=job.chat.envelope.correlation_id,
                    channel=job.channel.channel,
                )
            finally:
                self.in_flight -= 1
                self.queue.done()

    def _responder_for(self, job: Job) -> Responder:
        context = self.channels.get(job.channel.key)
        if context is None or context.character.reply is None:
            raise RuntimeError(f"no reply path for channel {job.channel.key!r}")
        return context.character.reply.responder

    async def close(self) -> None:
        """Stop sharing spam strikes, stop watching the memory store and close it once its
        writes are done; idempotent."""
        if self.spam_share is not None:
            await self.spam_share.stop()
        if self._memory_watch is not None:
            self._memory_watch.cancel()
            await asyncio.gather(self._memory_watch, return_exceptions=True)
            self._memory_watch = None
        if self.memory is not None:
            await self.memory.close()

    def abandon_waiting(self) -> int:
        """Drop the jobs still queued (shutdown): each gets its ``shutdown`` line (see
        :meth:`~kryten_llm.bot.admission.Admission.drop`).

        Returns:
            How many were dropped.
        """
        jobs = self.queue.drain()
        for job in jobs:
            self.intake.admission.drop(job, Reason.SHUTDOWN, "reply_abandoned_at_shutdown")
        return len(jobs)
