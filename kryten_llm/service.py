"""Wiring and lifecycle of the live bot: connect, subscribe, run workers, shut down cleanly.

Nothing here decides anything about a message or builds the parts that do:
:mod:`kryten_llm.bot.assembly` builds them from the settings. This module owns the resources
(NATS connection, the shared aiohttp session, the response log, supervised tasks) in an
``AsyncExitStack``, the order of start and stop, and the read-only view the operator surface
is given (:class:`~kryten_llm.ops.view.BotView`):

start: connect to NATS (retrying with backoff while it is unreachable) → build the listening
half of the bot and subscribe to each channel → build the answering half (providers, reply
path, supervised workers) → probe the providers → operator surface → announce startup.

stop (SIGTERM/SIGINT, group restart): stop intake → give in-flight replies
``shutdown_grace_seconds`` → publish shutdown → drain NATS → close the log. Each step is bounded,
so the process exits within 10 s even when NATS is gone.
"""

from __future__ import annotations

import asyncio
import functools
import random
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from nats.aio.client import Client as NATS

from kryten_llm import __version__
from kryten_llm.bot.assembly import Bot
from kryten_llm.bot.responselog import Listener, ResponseLog
from kryten_llm.bot.supervisor import Supervisor
from kryten_llm.bot.view import WORKER, ServiceView, State
from kryten_llm.bus.connection import close, collect_rarely, connect, subscribe_events
from kryten_llm.bus.lifecycle import Lifecycle
from kryten_llm.bus.sender import ChatSender
from kryten_llm.bus.settle import settle
from kryten_llm.bus.subjects import channel_events
from kryten_llm.cluster import Coordinator
from kryten_llm.config.layers import Sources, find_sources
from kryten_llm.console import EXIT_FAILED, EXIT_OK, EXIT_RESTART, on_stop_signals
from kryten_llm.errors import ControlError
from kryten_llm.pipeline.stats import Count, Flags, Stats

if TYPE_CHECKING:
    from kryten_llm.bot.intake import ChannelContext
    from kryten_llm.bot.operator import Operator
    from kryten_llm.config import Settings
    from kryten_llm.config.overrides import Override
    from kryten_llm.llm.base import Completion
    from kryten_llm.ops.health import Liveness
    from kryten_llm.ops.surface import OperatorSurface
    from kryten_llm.ops.telemetry import Telemetry

log = structlog.get_logger(__name__)


class Service(ServiceView):
    """The live bot: ``await Service(settings).run(stop_event)`` runs it until the event is set.

    It is also the bot's :class:`~kryten_llm.ops.view.BotView` for the operator surface; the
    operator's switches are its :class:`~kryten_llm.bot.operator.Operator`.

    Args:
        settings: the whole configuration.
        config: the ``--config`` file the settings came from; a reload reads it (and the other
            layers) again. Without it and without ``cli``, ``settings`` were built in code:
            a reload starts from them again.
        cli: values given on the command line, kept over every reload.
        overrides_file: where runtime changes are kept (default: beside the config file,
            or ``kryten-llm.overrides.json`` in the working folder).
        rng: randomness for trigger probabilities (seed it for reproducible runs).
        listeners: called with every outcome written to the response log (transcripts).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        config: Path | None = None,
        cli: dict[str, Any] | None = None,
        overrides_file: Path | None = None,
        rng: random.Random | None = None,
        listeners: Sequence[Listener] = (),
    ) -> None:
        self._settings = settings
        self._cli = dict(cli or {})
        given = settings.model_dump() if config is None and cli is None else None
        self._sources = functools.partial(
            _sources, config, given=given, overrides_file=overrides_file
        )
        self.instance = uuid.uuid4().hex[:12]
        self.operator: Operator | None = None  # the operator's switches, once the bot runs
        self._listeners = tuple(listeners)
        self.state = State.NEW
        self._started_at = time.monotonic()
        self._rng = rng
        self._stop: asyncio.Event | None = None
        self._stop_reason = ""
        self._fatal: str | None = None
        self.nc: NATS | None = None
        self.bot: Bot | None = None
        self.lifecycle: Lifecycle | None = None
        self.ready = asyncio.Event()
        self._stats = Stats()
        self._flags = Flags(dry_run=settings.dry_run)
        self.telemetry: Telemetry | None = None  # built once the bot listens
        self.surface: OperatorSurface | None = None
        self._sender: ChatSender | None = None
        self.cluster: Coordinator | None = None  # issue 15: this instance among several
        self._supervisor = Supervisor(self._give_up)

    def liveness(self) -> Liveness | None:
        """What the bot can do right now, for ``/health`` (``None`` until it runs)."""
        bot = self.bot
        if bot is None or self.state is not State.RUNNING:
            return None
        sender = self._sender
        cluster = self.cluster.snapshot() if self.cluster is not None else None
        if cluster is not None and bot.spam_share is not None:
            cluster["spam_share"] = bot.spam_share.snapshot()
        from kryten_llm.ops import health as ops_health  # imported after startup, when asked

        return ops_health.Liveness(
            workers=self._settings.processing.workers,
            workers_alive=self._supervisor.alive(WORKER),
            queue_stalled_seconds=bot.queue.stalled_seconds(),
            send_paused_seconds=(
                {c.channel: sender.paused_for(c) for c in self._settings.channels}
                if sender is not None
                else {}
            ),
            worker_errors=bot.stats.totals[Count.WORKER_ERRORS],
            task_restarts=self._supervisor.restarts,
            cluster=cluster,
        )

    # --- the operator's switches: kryten_llm.bot.operator.Operator, once the bot runs -------

    def request_reload(self, origin: str) -> None:
        """Reload in the background (SIGHUP); logged, with every error's key path."""
        if self.operator is None:
            log.warning("config_reload_skipped", origin=origin, detail="the bot is not running")
            return
        self.operator.request_reload(origin)

    async def tune(self, action: str, value: Any, origin: str) -> dict[str, Any]:
        """Reload, change or reset the configuration (see :mod:`kryten_llm.bot.tuning`).

        Raises:
            ControlError: refused (invalid, unknown, or the bot is not running yet).
        """
        if self.operator is None:
            raise ControlError(503, "the bot is not running yet")
        return await self.operator.tune(action, value, origin)

    # --- lifecycle ---------------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        """Ask :meth:`run` to shut down (signal handlers, group restart, tests).

        A request made before :meth:`run` started is honoured as soon as it starts.
        """
        self._stop_reason = self._stop_reason or reason
        if self._stop is not None:
            self._stop.set()

    def _give_up(self, reason: str) -> None:
        """A supervised task kept dying: stop with that as the error."""
        self._fatal = reason
        self.request_stop(reason)

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
            nc = await connect(self._settings.nats, stop, running=lambda: self.running)
            if nc is None:
                self.state = State.STOPPED
                log.info("service_stopped", reason="stopped before NATS was reached")
                return EXIT_OK
            self.nc = nc
            # Unwound in reverse: NATS drains (events still arriving are decided and logged)
            # before the response log is closed.
            response_log = ResponseLog(
                self._settings.logging.response_log_dir,
                enabled=self._settings.logging.response_log,
            )
            stack.callback(response_log.close)
            stack.push_async_callback(close, nc)
            for listener in self._listeners:
                response_log.add_listener(listener)
            await self._start(nc, response_log, stack)
            self.state = State.RUNNING
            self._started_at = time.monotonic()
            self.ready.set()
            log.info(
                "service_started",
                channels=[c.channel for c in self._settings.channels],
                dry_run=self.flags.dry_run,
                provider=self._settings.llm.default_provider,
            )
            await stop.wait()
            self.state = State.STOPPING
            await self._shutdown(nc)
        self.state = State.STOPPED
        if self._fatal is not None:
            log.error("service_stopped", reason=self._fatal)
            return EXIT_FAILED
        log.info("service_stopped", reason=self._stop_reason or "stop event")
        restart = self.lifecycle is not None and self.lifecycle.restart_requested
        return EXIT_RESTART if restart else EXIT_OK

    async def _start(
        self,
        nc: NATS,
        response_log: ResponseLog,
        stack: AsyncExitStack,
    ) -> None:
        """Build the bot and start everything; each part is stopped by ``stack``, even when a
        later step of the start fails.

        The bot listens first: the listening half is built and subscribed, then the answering
        half (HTTP session, providers, reply path, workers), telemetry and the operator surface
        are imported and built, then the providers are probed. A mention that arrives meanwhile
        waits in the queue; counters count from the start, the dashboard's recent-decisions
        table from here on.
        """
        settings = self._settings
        self._sender = sender = ChatSender(nc, settings.send)
        # --- cluster hook (issue 15): join the other instances before the first message ---
        self.cluster = cluster = Coordinator(settings)
        await cluster.start(nc)
        stack.push_async_callback(cluster.stop)  # before NATS closes
        self.instance = cluster.instance_id
        self.bot = bot = Bot(
            settings,
            sender=sender,
            response_log=response_log,
            rng=self._rng,
            stats=self._stats,
            flags=self._flags,
            cluster=cluster,
        )
        stack.push_async_callback(bot.close)  # memory (issue 14): its store's last writes
        await bot.start(nc)  # title memory (KV or file); shared spam strikes when clustered
        collect_rarely()  # a burst's backlog is not walked every 700 lines
        for context in bot.channels.values():
            await subscribe_events(
                nc, channel_events(context.config.channel), self._callback(context)
            )
        # Make sure the server has the subscriptions before the imports below hold the loop.
        await settle(nc, settings.nats.connect_timeout_seconds)
        # Listening now; the rest of the bot is imported and built (see the docstring).
        import aiohttp

        from kryten_llm.bus.natsload import give_aiohttp_back

        give_aiohttp_back()

        from kryten_llm import checks
        from kryten_llm.bot import operator as bot_operator
        from kryten_llm.llm.manager import build_manager
        from kryten_llm.ops import engagement as ops_engagement
        from kryten_llm.ops import surface as ops_surface
        from kryten_llm.ops import telemetry as ops_telemetry

        self.telemetry = telemetry = ops_telemetry.Telemetry(self._stats)
        response_log.add_listener(telemetry.on_outcome)
        # conv14: engagement figures (share of chat, activations, refusals) for dashboard/metrics
        engagement = ops_engagement.Engagement(
            telemetry.registry,
            bot.conversation.shares,
            lambda: self.settings.participation.share_budget,
        )
        response_log.add_listener(engagement.on_outcome)
        session = await stack.enter_async_context(aiohttp.ClientSession())
        manager = build_manager(settings.llm, session, observer=self._observe_call)
        bot.start_answering(manager)
        stack.push_async_callback(self._supervisor.stop)
        for i in range(settings.processing.workers):
            self._supervisor.spawn(f"{WORKER}{i}", bot.work)
        self.operator = bot_operator.Operator(
            bot,
            self._sources,
            cli=self._cli,
            check=checks.startup_problems,
            session=session,
            observer=self._observe_call,
            supervisor=self._supervisor,
            stop_explore=self._stop_explore,
        )
        stack.push_async_callback(self.operator.close)  # before the HTTP session closes
        await manager.probe_all()
        self._supervisor.spawn(bot_operator.REPROBE_TASK, manager.reprobe_failing)
        if self._stop is not None and self._stop.is_set():
            return  # asked to stop while starting: no surface, no startup announcement
        self.surface = surface = ops_surface.OperatorSurface(self, self.operator, telemetry)
        surface.engagement = engagement  # conv14
        stack.push_async_callback(surface.stop)
        await surface.start(nc)
        self.lifecycle = Lifecycle(
            nc,
            settings.service,
            version=__version__,
            metadata=lambda: {**surface.announcement(), "cluster": cluster.snapshot()},
            on_restart=self.request_stop,
            instance_id=cluster.instance_id,
            listeners=[surface.registry.on_lifecycle] if surface.registry is not None else (),
        )
        stack.push_async_callback(self.lifecycle.stop, "start failed")  # no-op after _shutdown
        await self.lifecycle.start()
        await settle(nc, settings.nats.connect_timeout_seconds)

    async def _stop_explore(self, run: str) -> None:
        if self.surface is not None:
            await self.surface.stop_explore(run)

    def _callback(self, context: ChannelContext) -> Callable[[str, bytes], Awaitable[None] | None]:
        assert self.bot is not None
        return functools.partial(self.bot.intake.handle, context)

    def _observe_call(
        self, provider: str, outcome: str, seconds: float, completion: Completion | None
    ) -> None:
        if self.telemetry is None:
            return
        self.telemetry.on_call(provider, outcome, seconds, completion)
        if completion is not None and self.manager is not None:
            cost = self.manager.cost(completion)
            if cost:
                self.telemetry.on_cost(provider, cost)

    async def _shutdown(self, nc: NATS) -> None:
        """Stop intake, let in-flight replies finish within the grace, announce shutdown."""
        bot = self.bot
        if bot is not None:
            bot.intake.accepting = False
            grace = self._settings.processing.shutdown_grace_seconds
            started = time.monotonic()
            await bot.intake.admission.settle(grace)  # nothing joins the queue after this
            try:
                await asyncio.wait_for(bot.queue.wait_idle(), grace - (time.monotonic() - started))
            except TimeoutError:
                log.warning("shutdown_grace_expired", waiting=len(bot.queue))
            bot.abandon_waiting()
        if self.lifecycle is not None:
            try:
                reason = self._stop_reason or "stopped"
                await asyncio.wait_for(self.lifecycle.stop(reason), 2.0)
            except TimeoutError:
                log.warning("shutdown_announce_timeout")
        if self.surface is not None:
            await self.surface.stop()  # before NATS drains; the exit stack's call is then a no-op


async def run_service(
    settings: Settings, *, config: Path | None = None, cli: dict[str, Any] | None = None
) -> int:
    """Run the bot until SIGTERM/SIGINT; returns the exit code. SIGHUP reloads the config.

    Args:
        settings: the configuration read at startup.
        config: the ``--config`` file, read again (with its layers) on SIGHUP.
        cli: command-line values, kept over every reload.
    """
    service = Service(settings, config=config, cli=cli)
    stop = asyncio.Event()
    started = time.monotonic()
    with (
        on_stop_signals(lambda sig: service.request_stop(sig.name)),
        on_stop_signals(lambda sig: service.request_reload(sig.name), signals=(signal.SIGHUP,)),
    ):
        try:
            return await service.run(stop)
        finally:
            log.debug("service_run_seconds", seconds=round(time.monotonic() - started, 3))


def _sources(
    config: Path | None,
    overrides: Sequence[Override] | None,
    *,
    given: dict[str, Any] | None,
    overrides_file: Path | None,
) -> Sources:
    return find_sources(config, overrides=overrides, given=given, overrides_file=overrides_file)
