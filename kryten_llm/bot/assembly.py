"""The one place where the bot's parts are built from :class:`~kryten_llm.config.Settings`.

Everything that decides whether to answer and produces the answer is put together here:
channel state, intake (filters, triggers, spam guard, rate limiter) and fallback pools, then,
through :mod:`kryten_llm.bot.replypath`, the prompt builder, validator and responder. The live
service (:mod:`kryten_llm.service`) and the demo build a :class:`Bot`; ``kryten-llm batch
--pipeline`` builds the same reply path; so a change to how a reply is produced is made once,
here, and every path gets it. Providers are built by :func:`kryten_llm.llm.build_manager`, which
this module's callers pass in.

The service keeps only resources (NATS, HTTP session, logs) and lifecycle.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import structlog

from kryten_llm.bot.intake import ChannelContext, Intake
from kryten_llm.errors import ControlError
from kryten_llm.pipeline.decisions import Reason
from kryten_llm.pipeline.fallback import FallbackPools
from kryten_llm.pipeline.filters import IntakeFilter
from kryten_llm.pipeline.jobs import JobQueue
from kryten_llm.pipeline.outcome import Outcome
from kryten_llm.pipeline.ratelimit import RateLimiter
from kryten_llm.pipeline.spam import SpamGuard
from kryten_llm.pipeline.state import ChannelState
from kryten_llm.pipeline.stats import Flags, Stats
from kryten_llm.pipeline.triggers import TriggerEngine

if TYPE_CHECKING:
    from kryten_llm.bot.replypath import ReplyPath
    from kryten_llm.bot.responselog import ResponseLog
    from kryten_llm.bus.sender import ChatSender
    from kryten_llm.cluster import Coordinator
    from kryten_llm.config import Settings
    from kryten_llm.llm.manager import ProviderManager

log = structlog.get_logger(__name__)


def build_channels(settings: Settings) -> dict[str, ChannelContext]:
    """One context (config and state) per configured channel, by :attr:`ChannelConfig.key`."""
    return {
        c.key: ChannelContext(c, ChannelState(settings.processing.history_size))
        for c in settings.channels
    }


class Bot:
    """Every part of the live bot, built from ``settings`` in one place.

    The bot is built in two halves: this constructor builds the listening half (channel state,
    intake, queue), enough to subscribe; :meth:`start_answering` adds the reply path.

    Args:
        settings: the whole configuration (never changed here; a switch builds from a copy).
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
        self.channels = build_channels(settings)
        self.queue = JobQueue(settings.processing.queue_size)
        self.pools = FallbackPools.from_settings(settings)
        # cluster hook (issue 15): limits shared with the other instances when clustered
        shared = cluster.limit_store if cluster is not None else None
        self.limiter = RateLimiter(settings.ratelimit, settings.triggers, store=shared)
        self._rng = rng
        self._sender = sender
        self._response_log = response_log
        self._reply: ReplyPath | None = None
        self.manager: ProviderManager | None = None
        self.intake = Intake(
            settings,
            intake_filter=IntakeFilter(settings.filters, settings.bot.username),
            triggers=TriggerEngine(settings.triggers, settings.personality, rng=rng),
            limiter=self.limiter,
            spam=SpamGuard(settings.spam),
            queue=self.queue,
            sender=sender,
            response_log=response_log,
            stats=self.stats,
            flags=self.flags,
        )
        self.intake.cluster = cluster  # cluster hook (issue 15)

    def start_answering(self, manager: ProviderManager) -> ReplyPath:
        """Build the answering half around ``manager``; jobs queued so far are answered next.

        Imported here, not at the top: the bot listens to its channels before the reply path
        and the providers behind it are loaded.
        """
        from kryten_llm.bot.replypath import build_reply_path

        self.manager = manager
        self._reply = build_reply_path(
            self.settings,
            manager,
            response_log=self._response_log,
            stats=self.stats,
            flags=self.flags,
            sender=self._sender,
            channels=self.channels,
            pools=self.pools,
        )
        return self._reply

    @property
    def reply(self) -> ReplyPath:
        """The answering half (see :meth:`start_answering`).

        Raises:
            RuntimeError: the bot does not answer yet.
        """
        if self._reply is None:
            raise RuntimeError("the bot listens but does not answer yet: call start_answering")
        return self._reply

    def abandon_waiting(self) -> int:
        """Drop the jobs still queued (shutdown): each gets its ``shutdown`` outcome line.

        Returns:
            How many were dropped.
        """
        jobs = self.queue.drain()
        for job in jobs:
            self.stats.decisions[Reason.SHUTDOWN] += 1
            self._response_log.write(
                Outcome.of(job.channel, job.chat, job.prompt.trigger, Reason.SHUTDOWN)
            )
            log.info("reply_abandoned_at_shutdown", username=job.chat.username)
        return len(jobs)

    @property
    def personality(self) -> str:
        return self.settings.active_personality

    def switch_personality(self, name: str) -> None:
        """Speak as another configured personality from the next reply on.

        Raises:
            ControlError: no personality has that name (the message lists them).
        """
        if name not in self.settings.personalities:
            known = ", ".join(sorted(self.settings.personalities))
            raise ControlError(400, f"no personality {name!r}; configured: {known}")
        settings = self.settings.model_copy(update={"active_personality": name})
        personality = settings.personality
        self.settings = settings
        self.intake.use_triggers(TriggerEngine(settings.triggers, personality, rng=self._rng))
        if self._reply is not None:
            self._reply.prompts.switch(personality)
            self._reply.validator.use_system_prompt(self._reply.prompts.system)
            self._reply.responder.use_personality(name, personality)
