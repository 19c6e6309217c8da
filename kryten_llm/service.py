"""Wiring and lifecycle of the live bot: connect, subscribe, run workers, shut down cleanly.

Nothing here decides anything about a message; :mod:`kryten_llm.intake` and
:mod:`kryten_llm.responder` do. This module owns the resources (NATS connection, the shared
aiohttp session, the response log, worker tasks) in an ``AsyncExitStack`` and the order of
start and stop:

start: connect to NATS (retrying with backoff while it is unreachable) → build providers and
pipeline → start workers → subscribe to each channel → announce startup.

stop (SIGTERM/SIGINT, group restart): stop intake → give in-flight replies
``shutdown_grace_seconds`` → publish shutdown → drain NATS → close the log. Each step is bounded,
so the process exits within 10 s even when NATS is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import aiohttp
import structlog
from nats.aio.client import Client as NATS

from kryten_llm import __version__
from kryten_llm.bus.lifecycle import Lifecycle
from kryten_llm.bus.sender import ChatSender
from kryten_llm.bus.settle import settle
from kryten_llm.bus.subjects import channel_events
from kryten_llm.errors import BusError
from kryten_llm.intake import ChannelContext, Intake, channel_key
from kryten_llm.llm import create_provider
from kryten_llm.llm.manager import ProviderManager
from kryten_llm.ops.surface import OperatorSurface
from kryten_llm.ops.telemetry import Telemetry
from kryten_llm.pipeline.fallback import FallbackPools
from kryten_llm.pipeline.filters import IntakeFilter
from kryten_llm.pipeline.jobs import JobQueue
from kryten_llm.pipeline.prompt import PromptBuilder
from kryten_llm.pipeline.ratelimit import RateLimiter
from kryten_llm.pipeline.spam import SpamGuard
from kryten_llm.pipeline.state import ChannelState
from kryten_llm.pipeline.triggers import TriggerEngine
from kryten_llm.pipeline.validator import ReplyValidator
from kryten_llm.responder import Responder
from kryten_llm.responselog import Listener, ResponseLog
from kryten_llm.stats import Flags, Stats

if TYPE_CHECKING:
    from nats.aio.msg import Msg

    from kryten_llm.config import Settings
    from kryten_llm.llm.base import Completion

log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_RESTART = 75  # EX_TEMPFAIL: asked to restart; llm.service restarts on it
_FIRST_RETRY_SECONDS = 0.25  # doubled before the first retry


class State(StrEnum):
    NEW = "new"
    CONNECTING = "connecting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Service:
    """The live bot: ``await Service(settings).run(stop_event)`` runs it until the event is set.

    Args:
        settings: the whole configuration.
        rng: randomness for trigger probabilities (seed it for reproducible runs).
        listeners: called with every response-log record (transcripts, dashboards).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        rng: random.Random | None = None,
        listeners: Sequence[Listener] = (),
    ) -> None:
        self.settings = settings
        self._listeners = tuple(listeners)
        self.state = State.NEW
        self._started_at = time.monotonic()
        self.stats = Stats()
        self.flags = Flags(dry_run=settings.dry_run)
        self.channels: dict[str, ChannelContext] = {
            channel_key(c.domain, c.channel): ChannelContext(
                c, ChannelState(settings.processing.history_size)
            )
            for c in settings.channels
        }
        self.queue = JobQueue(settings.processing.queue_size)
        self._rng = rng
        self._stop: asyncio.Event | None = None
        self._stop_reason = ""
        self.nc: NATS | None = None
        self.intake: Intake | None = None
        self.responder: Responder | None = None
        self.lifecycle: Lifecycle | None = None
        self.manager: ProviderManager | None = None
        self.ready = asyncio.Event()
        self._connect_attempts = 0
        self.telemetry = Telemetry(self.stats)
        self.surface: OperatorSurface | None = None
        self.prompts: PromptBuilder | None = None
        self.validator: ReplyValidator | None = None
        self.limiter: RateLimiter | None = None
        self.pools: FallbackPools | None = None
        if settings.fallback.enabled:
            self.pools = FallbackPools(
                settings.fallback.pool_dir,
                [word.name for word in settings.triggers.words],
                settings.personalities,
            )

    @property
    def uptime_seconds(self) -> float:
        return time.monotonic() - self._started_at

    @property
    def fallback_lines(self) -> int:
        """Lines in the fallback pools for when every provider fails (0: none)."""
        return self.pools.total_lines if self.pools is not None else 0

    # --- the operator's switches (see kryten_llm.ops.controls) -------------------------------

    @property
    def dry_run(self) -> bool:
        return self.flags.dry_run

    def set_paused(self, paused: bool) -> None:
        self.flags.paused = paused

    def set_dry_run(self, dry_run: bool) -> None:
        self.flags.dry_run = dry_run

    def switch_personality(self, name: str) -> None:
        """Speak as another configured personality from the next reply on.

        Raises:
            KeyError: no personality has that name (the message lists them).
        """
        settings = self.settings
        if name not in settings.personalities:
            known = ", ".join(sorted(settings.personalities))
            raise KeyError(f"no personality {name!r}; configured: {known}")
        settings.active_personality = name
        personality = settings.personality
        if self.prompts is not None:
            self.prompts.switch(personality)
        if self.validator is not None and self.prompts is not None:
            self.validator.use_system_prompt(self.prompts.system)
        if self.intake is not None:
            self.intake.use_triggers(TriggerEngine(settings.triggers, personality, rng=self._rng))
        if self.responder is not None:
            self.responder.use_personality(name, personality)
        log.info("personality_switched", personality=name)

    async def clear_cooldowns(self) -> None:
        if self.limiter is not None:
            await self.limiter.clear()

    async def stop_explore(self, run: str) -> None:
        """Stop an explore run shown on the dashboard (``kryten-llm explore --nats``)."""
        if self.surface is not None:
            await self.surface.stop_explore(run)

    def request_stop(self, reason: str) -> None:
        """Ask :meth:`run` to shut down (signal handlers, group restart, tests).

        A request made before :meth:`run` started is honoured as soon as it starts.
        """
        self._stop_reason = self._stop_reason or reason
        if self._stop is not None:
            self._stop.set()

    async def run(self, stop: asyncio.Event) -> int:
        """Run until ``stop`` is set; returns the process exit code.

        Raises:
            BusError: NATS refused the connection for good (bad credentials, say).
        """
        self._stop = stop
        if self._stop_reason:
            stop.set()
        async with AsyncExitStack() as stack:
            self.state = State.CONNECTING
            nc = await self._connect(stop)
            if nc is None:
                self.state = State.STOPPED
                log.info("service_stopped", reason="stopped before NATS was reached")
                return EXIT_OK
            self.nc = nc
            stack.push_async_callback(self._close_nats, nc)
            session = await stack.enter_async_context(aiohttp.ClientSession())
            response_log = ResponseLog(
                self.settings.logging.response_log_dir,
                enabled=self.settings.logging.response_log,
            )
            stack.callback(response_log.close)
            response_log.add_listener(self.telemetry.on_record)
            for listener in self._listeners:
                response_log.add_listener(listener)
            await self._start(nc, session, response_log, stack)
            self.state = State.RUNNING
            self._started_at = time.monotonic()
            self.ready.set()
            log.info(
                "service_started",
                channels=[c.channel for c in self.settings.channels],
                dry_run=self.flags.dry_run,
                provider=self.settings.llm.default_provider,
            )
            await stop.wait()
            self.state = State.STOPPING
            await self._shutdown(nc)
        self.state = State.STOPPED
        log.info("service_stopped", reason=self._stop_reason or "stop event")
        restart = self.lifecycle is not None and self.lifecycle.restart_requested
        return EXIT_RESTART if restart else EXIT_OK

    async def _start(
        self,
        nc: NATS,
        session: aiohttp.ClientSession,
        response_log: ResponseLog,
        stack: AsyncExitStack,
    ) -> None:
        """Build the pipeline and start everything; each part is stopped by ``stack``, even
        when a later step of the start fails."""
        settings = self.settings
        providers = {
            name: create_provider(name, cfg, session)
            for name, cfg in settings.llm.providers.items()
        }
        self.manager = manager = ProviderManager(
            providers, settings.llm, observer=self._observe_call
        )
        await manager.probe_all()
        sender = ChatSender(nc, settings.send)
        self.limiter = RateLimiter(settings.ratelimit, settings.triggers)
        self.intake = Intake(
            settings,
            intake_filter=IntakeFilter(settings.filters, settings.bot.username),
            triggers=TriggerEngine(settings.triggers, settings.personality, rng=self._rng),
            limiter=self.limiter,
            spam=SpamGuard(settings.spam),
            queue=self.queue,
            sender=sender,
            response_log=response_log,
            stats=self.stats,
            flags=self.flags,
        )
        self.prompts = prompts = PromptBuilder(settings.personality, settings.prompts)
        self.validator = ReplyValidator(settings.validation, prompts.system)
        self.responder = Responder(
            settings,
            manager=manager,
            prompts=prompts,
            validator=self.validator,
            sender=sender,
            channels=self.channels,
            response_log=response_log,
            stats=self.stats,
            flags=self.flags,
            pools=self.pools,
        )
        workers = [
            asyncio.create_task(self.responder.run(self.queue), name=f"reply-worker-{i}")
            for i in range(settings.processing.workers)
        ]
        stack.push_async_callback(self._stop_workers, workers)
        for context in self.channels.values():
            await nc.subscribe(channel_events(context.config.channel), cb=self._callback(context))
        self.surface = surface = OperatorSurface(self)
        stack.push_async_callback(surface.stop)
        await surface.start(nc)
        self.lifecycle = Lifecycle(
            nc,
            settings.service,
            version=__version__,
            metadata=self._metadata,
            on_restart=self.request_stop,
            listeners=[surface.registry.on_lifecycle] if surface.registry is not None else (),
        )
        await self.lifecycle.start()
        await settle(nc, self.settings.nats.connect_timeout_seconds)

    def _callback(self, context: ChannelContext) -> Any:
        intake = self.intake
        assert intake is not None

        async def on_event(msg: Msg) -> None:
            await intake.handle(context, msg.subject, msg.data)

        return on_event

    def _observe_call(
        self, provider: str, outcome: str, seconds: float, completion: Completion | None
    ) -> None:
        self.telemetry.on_call(provider, outcome, seconds, completion)
        if completion is not None and self.manager is not None:
            cost = self.manager.cost(completion)
            if cost:
                self.telemetry.on_cost(provider, cost)

    def _metadata(self) -> dict[str, Any]:
        surface = self.surface
        health = surface.health() if surface is not None else None
        return {
            "endpoints": surface.endpoints() if surface is not None else {},
            "health": (
                {
                    "status": health["status"],
                    "reasons": health["reasons"],
                    "components": health["components"],
                }
                if health is not None
                else None
            ),
            "channels": [
                {"domain": c.domain, "channel": c.channel} for c in self.settings.channels
            ],
            "bot_username": self.settings.bot.username,
            "dry_run": self.flags.dry_run,
            "paused": self.flags.paused,
            "provider": self.settings.llm.default_provider,
            "providers": self.manager.snapshot() if self.manager is not None else {},
            "queue_depth": len(self.queue),
            "stats": self.stats.snapshot(),
        }

    async def _connect(self, stop: asyncio.Event) -> NATS | None:
        """Connect, retrying with exponential backoff until connected or ``stop`` is set.

        nats-py retries a first connection by itself, endlessly; we let it, and lengthen its
        wait after every failed attempt from the error callback, which also logs the attempt.
        """
        cfg = self.settings.nats
        nc = NATS()
        self._connect_attempts = 0
        options: dict[str, Any] = {
            "servers": cfg.servers,
            "name": cfg.connection_name,
            "connect_timeout": cfg.connect_timeout_seconds,
            "reconnect_time_wait": _FIRST_RETRY_SECONDS,
            "max_reconnect_attempts": -1,
            "allow_reconnect": True,
            "error_cb": self._nats_error_callback(nc),
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
        }
        if cfg.user:
            options["user"] = cfg.user
        if cfg.password:
            options["password"] = cfg.password.get_secret_value()
        if cfg.token:
            options["token"] = cfg.token.get_secret_value()
        if cfg.creds_file:
            options["user_credentials"] = str(cfg.creds_file)
        connecting = asyncio.ensure_future(nc.connect(**options))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({connecting, stopping}, return_when="FIRST_COMPLETED")
        stopping.cancel()
        if not connecting.done():
            connecting.cancel()
            with contextlib.suppress(BaseException):
                await connecting
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 1.0)
            return None
        try:
            connecting.result()
        except Exception as exc:  # bad credentials and the like: nats-py gave up
            log.error("nats_connect_failed", servers=cfg.servers, error=str(exc) or repr(exc))
            raise BusError(f"cannot connect to NATS at {', '.join(cfg.servers)}: {exc}") from exc
        # From now on nats-py reconnects by itself at the configured pace, for as long as it takes.
        nc.options["reconnect_time_wait"] = cfg.reconnect_wait_seconds
        url = nc.connected_url
        log.info("nats_connected", server=f"{url.hostname}:{url.port}" if url else "")
        return nc

    def _nats_error_callback(self, nc: NATS) -> Any:
        cap = self.settings.nats.initial_retry_max_seconds
        servers = self.settings.nats.servers

        async def on_error(exc: Exception) -> None:
            error = str(exc) or type(exc).__name__
            if self.state is State.CONNECTING:
                self._connect_attempts += 1
                wait = min(float(nc.options["reconnect_time_wait"]) * 2, cap)
                nc.options["reconnect_time_wait"] = wait  # read by nats-py before its next try
                log.warning(
                    "nats_unreachable",
                    servers=servers,
                    attempt=self._connect_attempts,
                    error=error,
                    retry_in=round(wait, 2),
                )
            elif self.state is State.RUNNING:
                log.warning("nats_error", error=error)

        return on_error

    async def _on_disconnected(self) -> None:
        if self.state is State.RUNNING:
            log.warning("nats_disconnected")

    async def _on_reconnected(self) -> None:
        log.info("nats_reconnected")

    async def _shutdown(self, nc: NATS) -> None:
        """Stop intake, let in-flight replies finish within the grace, announce shutdown."""
        if self.intake is not None:
            self.intake.accepting = False
        grace = self.settings.processing.shutdown_grace_seconds
        try:
            await asyncio.wait_for(self.queue.wait_idle(), grace)
        except TimeoutError:
            log.warning("shutdown_grace_expired", waiting=len(self.queue))
        for job in self.queue.drain():
            log.info("reply_abandoned_at_shutdown", username=job.chat.username)
        if self.lifecycle is not None:
            try:
                reason = self._stop_reason or "stopped"
                await asyncio.wait_for(self.lifecycle.stop(reason), 2.0)
            except TimeoutError:
                log.warning("shutdown_announce_timeout")
        if self.surface is not None:
            await self.surface.stop()  # before NATS drains; the exit stack's call is then a no-op

    async def _stop_workers(self, workers: list[asyncio.Task[None]]) -> None:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    async def _close_nats(self, nc: NATS) -> None:
        """Drain (flush what we published, let subscriptions finish), bounded; then close."""
        if nc.is_connected:
            try:
                await asyncio.wait_for(nc.drain(), 2.0)
            except Exception as exc:
                log.warning("nats_drain_failed", error=str(exc) or type(exc).__name__)
        if not nc.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 1.0)


async def run_service(settings: Settings) -> int:
    """Run the bot until SIGTERM/SIGINT; returns the exit code."""
    import signal

    service = Service(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, service.request_stop, signal.Signals(sig).name)
    started = time.monotonic()
    try:
        return await service.run(stop)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        log.debug("service_run_seconds", seconds=round(time.monotonic() - started, 3))
