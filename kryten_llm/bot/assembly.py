"""The one place where the bot's parts are built from :class:`~kryten_llm.config.Settings`.

Everything that decides whether to answer and produces the answer is put together here:
channel state, intake (filters, triggers, spam guard, rate limiter), the prompt builder,
validator, fallback pools and the responder. The live service (:mod:`kryten_llm.service`),
``kryten-llm batch --pipeline``, the demo and ``--validate-config`` call these functions, so a
change to how a reply is produced is made once, here, and every path gets it. Providers are
built by :func:`kryten_llm.llm.build_manager`, which this module's callers pass in.

The service keeps only resources (NATS, HTTP session, logs) and lifecycle.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kryten_llm.bot.intake import ChannelContext, Intake
from kryten_llm.bot.responder import Responder
from kryten_llm.errors import ControlError
from kryten_llm.pipeline.fallback import FallbackPools
from kryten_llm.pipeline.filters import IntakeFilter
from kryten_llm.pipeline.jobs import JobQueue
from kryten_llm.pipeline.prompt import PromptBuilder
from kryten_llm.pipeline.ratelimit import RateLimiter
from kryten_llm.pipeline.spam import SpamGuard
from kryten_llm.pipeline.state import ChannelState
from kryten_llm.pipeline.stats import Flags, Stats
from kryten_llm.pipeline.triggers import TriggerEngine
from kryten_llm.pipeline.validator import ReplyValidator

if TYPE_CHECKING:
    from kryten_llm.bot.responselog import ResponseLog
    from kryten_llm.bus.sender import ChatSender
    from kryten_llm.config import Settings
    from kryten_llm.llm.manager import ProviderManager


def load_pools(settings: Settings) -> FallbackPools | None:
    """The fallback pools the config names, or ``None`` when fallback is off.

    Raises:
        ConfigError: a pool file is unreadable or holds lines the bot may not say.
    """
    if not settings.fallback.enabled:
        return None
    return FallbackPools(
        settings.fallback.pool_dir,
        [word.name for word in settings.triggers.words],
        settings.personalities,
    )


def build_channels(settings: Settings) -> dict[str, ChannelContext]:
    """One context (config and state) per configured channel, by :attr:`ChannelConfig.key`."""
    return {
        c.key: ChannelContext(c, ChannelState(settings.processing.history_size))
        for c in settings.channels
    }


@dataclass(slots=True)
class ReplyPath:
    """From a job to a reply: the parts the live bot and ``batch --pipeline`` share."""

    prompts: PromptBuilder
    validator: ReplyValidator
    responder: Responder


def build_reply_path(
    settings: Settings,
    manager: ProviderManager,
    *,
    response_log: ResponseLog,
    stats: Stats,
    flags: Flags,
    sender: ChatSender | None = None,
    channels: dict[str, ChannelContext] | None = None,
    pools: FallbackPools | None = None,
) -> ReplyPath:
    """The prompt builder (templates and context budget), validator and responder.

    Args:
        settings: the whole configuration.
        manager: asks the providers (see :func:`kryten_llm.llm.build_manager`).
        response_log: where each outcome is written.
        stats: counters of decisions.
        flags: the operator's switches (dry-run: nothing is sent).
        sender: sends replies; ``None`` never sends (batch).
        channels: channel state the reply reads (who is present); none for batch.
        pools: fallback lines for when every provider fails.
    """
    prompts = PromptBuilder(settings.personality, settings.prompts)
    validator = ReplyValidator(settings.validation, prompts.system)
    responder = Responder(
        settings,
        manager=manager,
        prompts=prompts,
        validator=validator,
        sender=sender,
        channels=channels if channels is not None else {},
        response_log=response_log,
        stats=stats,
        flags=flags,
        pools=pools,
    )
    return ReplyPath(prompts, validator, responder)


class Bot:
    """Every part of the live bot, built from ``settings`` in one place.

    Args:
        settings: the whole configuration (never changed here; a switch builds from a copy).
        manager: the provider manager.
        sender: sends to the bridge; ``None`` only logs.
        response_log: where outcomes are written.
        rng: randomness for trigger probabilities (seed it for reproducible runs).
        stats: the counters to count in (the service's own, so they exist before the bot).
        flags: the operator's switches (likewise).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        manager: ProviderManager,
        sender: ChatSender | None,
        response_log: ResponseLog,
        rng: random.Random | None = None,
        stats: Stats | None = None,
        flags: Flags | None = None,
    ) -> None:
        self.settings = settings
        self.manager = manager
        self.stats = stats if stats is not None else Stats()
        self.flags = flags if flags is not None else Flags(dry_run=settings.dry_run)
        self.channels = build_channels(settings)
        self.queue = JobQueue(settings.processing.queue_size)
        self.pools = load_pools(settings)
        self.limiter = RateLimiter(settings.ratelimit, settings.triggers)
        self._rng = rng
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
        self.reply = build_reply_path(
            settings,
            manager,
            response_log=response_log,
            stats=self.stats,
            flags=self.flags,
            sender=sender,
            channels=self.channels,
            pools=self.pools,
        )

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
        self.reply.prompts.switch(personality)
        self.reply.validator.use_system_prompt(self.reply.prompts.system)
        self.intake.use_triggers(TriggerEngine(settings.triggers, personality, rng=self._rng))
        self.reply.responder.use_personality(name, personality)
