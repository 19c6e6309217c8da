"""Assembles the operator surface around a running bot, and takes it down again.

The service owns the pipeline; this module only reads it through a
:class:`~kryten_llm.ops.view.BotView` (counters, provider health, channel state, the queue,
liveness) and offers the operator's switches through :class:`Controls`. It starts the
web server, the NATS Services API endpoint, the KV registry entry and the once-a-second
sampler, and builds the three views they share: the health verdict, the dashboard snapshot
and the Prometheus gauges.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import TYPE_CHECKING, Any

import structlog
from nats.micro.service import SEMVER_REGEX

from kryten_llm import __version__
from kryten_llm.bus.subjects import explore_progress, explore_stop
from kryten_llm.config import redacted
from kryten_llm.ops.controls import Controlled, Controls
from kryten_llm.ops.health import HealthInputs, assess
from kryten_llm.ops.metrics import LabelValues
from kryten_llm.ops.natsapi import CommandEndpoint, ServiceRegistry
from kryten_llm.ops.telemetry import Telemetry
from kryten_llm.ops.web import WebServer

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.aio.msg import Msg

    from kryten_llm.config import ChannelConfig, Settings
    from kryten_llm.explore.runs import RunBoard  # explore17
    from kryten_llm.ops.engagement import Engagement
    from kryten_llm.ops.view import BotView
    from kryten_llm.pipeline.state import ChannelState

log = structlog.get_logger(__name__)

_STATES = ("closed", "half_open", "open", "cooling", "misconfigured")
_SILENT_AFTER = 15.0  # seconds without progress after which a running explore run is dropped
_FINISHED_KEPT = 300.0
_EXPLORE_MAX_RUNS = 20  # anyone on the bus can announce a run: keep a bounded number
_EXPLORE_MAX_BYTES = 64 * 1024
_STATUSES = ("healthy", "degraded", "failing")


def _semver(version: str) -> str:
    """The Services API insists on semantic versions; a dev build's may not be one."""
    return version if SEMVER_REGEX.match(version) else "0.0.0"


class OperatorSurface:
    """Health, metrics, dashboard, controls and NATS endpoints of one bot.

    Args:
        view: what the surface reads.
        controlled: what the operator's switches act on.
        telemetry: the bot's metrics and recent decisions.
    """

    def __init__(self, view: BotView, controlled: Controlled, telemetry: Telemetry) -> None:
        self._view = view
        settings = view.settings
        self.telemetry = telemetry
        token = settings.web.token.get_secret_value() if settings.web.token else None
        self.controls = Controls(controlled, token)
        self.web: WebServer | None = None
        self.endpoint: CommandEndpoint | None = None
        self.registry: ServiceRegistry | None = None
        self._sampler: asyncio.Task[None] | None = None
        self._nc: NATS | None = None
        self.explore_runs: dict[str, tuple[float, dict[str, Any]]] = {}
        self.explore_board: RunBoard | None = None  # explore17: runs started from the page
        self.engagement: Engagement | None = None  # conv14: set by the service
        self._register_gauges()

    @property
    def _settings(self) -> Settings:
        return self._view.settings

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self, nc: NATS) -> None:
        """Start the sampler, the web server and the Services API endpoint."""
        settings = self._settings
        self._nc = nc
        self._sampler = asyncio.create_task(self._sample(), name="telemetry-sampler")
        await nc.subscribe(explore_progress(settings.service.name), cb=self._on_explore)
        if settings.web.enabled:
            self.web = WebServer(
                settings.web,
                state=self.state,
                health=self.health,
                metrics=self.telemetry.registry.render,
                controls=self.controls,
            )
            # explore17: the explore page under /explore/ (starting a run takes the token).
            from kryten_llm.explore import web as explore_web  # the page's code, only if served

            self.explore_board = explore_web.mount(
                self.web.app,
                settings=lambda: self._settings,
                authorize=self.controls.authorize,
                exposed=self.web.exposed,
            )
            try:
                await self.web.start()
            except OSError as exc:  # the bot keeps answering without its dashboard
                log.error(
                    "web_not_started",
                    host=settings.web.host,
                    port=settings.web.port,
                    error=str(exc),
                    fix="choose a free web.port, or 0 for any free port",
                )
                self.web = None
        if settings.service.services_api:
            self.endpoint = CommandEndpoint(
                nc,
                settings.service.name,
                self._view.instance,
                _semver(__version__),
                views={
                    "health": self.health,
                    "stats": lambda: self._view.stats.snapshot(),
                    "config": lambda: redacted(self._settings),
                },
                controls=self.controls,
            )
            await self.endpoint.start()
        if settings.service.kv_registry:
            ttl = 3 * settings.service.heartbeat_interval_seconds
            self.registry = ServiceRegistry(
                nc, settings.service.name, ttl, replicas=settings.cluster.replicas
            )

    async def stop(self) -> None:
        """Stop everything started, each step bounded."""
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None
        if self.endpoint is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.endpoint.stop(), 1.0)
        if self.explore_board is not None:  # explore17: runs end with their files written
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.explore_board.close(), 3.0)
        if self.web is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.web.stop(), 2.0)

    async def _on_explore(self, msg: Msg) -> None:
        """Progress of an explore run in another process (``kryten-llm explore --nats``)."""
        if len(msg.data) > _EXPLORE_MAX_BYTES:
            return
        try:
            body = json.loads(msg.data)
        except ValueError:
            return
        if not (isinstance(body, dict) and isinstance(body.get("run"), str)):
            return
        self.explore_runs[body["run"]] = (time.monotonic(), body)
        self.explore()  # prune, whether or not a dashboard is open
        while len(self.explore_runs) > _EXPLORE_MAX_RUNS:
            oldest = min(self.explore_runs, key=lambda run: self.explore_runs[run][0])
            del self.explore_runs[oldest]

    def explore(self) -> list[dict[str, Any]]:
        """Runs heard from lately: running ones for 15 s, finished ones for 5 minutes."""
        now = time.monotonic()
        for run, (seen, body) in list(self.explore_runs.items()):
            if now - seen > (_FINISHED_KEPT if body.get("final") else _SILENT_AFTER):
                del self.explore_runs[run]
        return [body for _, body in self.explore_runs.values()]

    async def stop_explore(self, run: str) -> None:
        """Ask explore run ``run`` (or ``"*"``: every run) to stop."""
        if self._nc is None:
            return
        subject = explore_stop(self._settings.service.name)
        await self._nc.publish(subject, json.dumps({"run": run}).encode())

    async def _sample(self) -> None:
        while True:
            try:
                self.telemetry.sample()
            except Exception:  # a chart point lost, never the sampler
                log.exception("telemetry_sample_failed")
            await asyncio.sleep(1.0)

    def endpoints(self) -> dict[str, Any]:
        """``metadata.endpoints`` for lifecycle events, as kryten-py services publish it."""
        if self.web is None or self.web.port is None:
            return {}
        port = self.web.port
        return {
            "health": {"port": port, "path": "/health"},
            "metrics": {"port": port, "path": "/metrics"},
            "dashboard": {"port": port, "path": "/"},
        }

    def announcement(self) -> dict[str, Any]:
        """``metadata`` of the lifecycle events (startup, heartbeat): what the bot is and does."""
        view = self._view
        settings = self._settings
        health = self.health()
        return {
            "endpoints": self.endpoints(),
            "health": {key: health[key] for key in ("status", "reasons", "components")},
            "channels": [{"domain": c.domain, "channel": c.channel} for c in settings.channels],
            "bot_username": settings.bot.username,
            "dry_run": view.flags.dry_run,
            "paused": view.flags.paused,
            "provider": settings.llm.default_provider,
            "providers": view.manager.snapshot() if view.manager is not None else {},
            "queue_depth": view.queue_depth,
            "stats": view.stats.snapshot(),
        }

    # --- views -------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The health verdict (see :mod:`kryten_llm.ops.health`)."""
        view = self._view
        now = time.monotonic()
        manager = view.manager
        return assess(
            HealthInputs(
                running=view.running,
                nats_connected=view.nats_connected,
                channel_ages={
                    config.channel: (
                        now - state.last_event_at if state.last_event_at is not None else None
                    )
                    for config, state in view.channel_states()
                },
                providers=manager.snapshot() if manager is not None else {},
                chain=manager.chain if manager is not None else [],
                queue_depth=view.queue_depth,
                queue_capacity=view.queue_capacity,
                uptime_seconds=view.uptime_seconds,
                paused=view.flags.paused,
                dry_run=view.flags.dry_run,
                fallback_lines=view.fallback_lines,
                liveness=view.liveness(),
            ),
            stale_after_seconds=self._settings.web.stale_after_seconds,
            # A live worker finishes every job by its deadline: waiting longer than that is
            # a stall, waiting behind a slow but working model is not.
            stall_after_seconds=max(
                self._settings.web.stall_after_seconds,
                self._settings.processing.reply_deadline_seconds,
            ),
        )

    def state(self) -> dict[str, Any]:
        """Everything the dashboard shows, as one JSON-able snapshot."""
        view = self._view
        settings = self._settings
        telemetry = self.telemetry
        manager = view.manager
        providers: dict[str, Any] = {}
        if manager is not None:
            for name, snapshot in manager.snapshot().items():
                providers[name] = {
                    **snapshot,
                    "model": manager.providers[name].model,
                    "outcomes": telemetry.provider_calls.get(name, {}),
                    "in_chain": name in manager.chain,
                }
        stats = view.stats.snapshot()
        return {
            "service": {
                "name": settings.service.name,
                "version": __version__,
                "state": view.state_name,
                "uptime_seconds": round(view.uptime_seconds, 1),
                "paused": view.flags.paused,
                "dry_run": view.flags.dry_run,
                "personality": settings.active_personality,
                "personalities": sorted(settings.personalities),
                "controls_enabled": self.controls.enabled,
                "instance": view.instance,
            },
            "tuning": dict(view.tuning()),
            "health": self.health(),
            "counters": {
                key: stats.get(key, 0)
                for key in ("events", "chat", "triggered", "decision_answered", "events_malformed")
            },
            "triggers": telemetry.breakdown("triggers"),
            "decisions": telemetry.breakdown("decisions"),
            "series": list(telemetry.series),
            "providers": providers,
            "channels": [self._channel(c, s) for c, s in view.channel_states()],
            "recent": list(telemetry.recent),
            "queue": {"depth": view.queue_depth, "capacity": view.queue_capacity},
            "explore": self.explore(),
            "fallback_pools": dict(view.pool_sizes()),
            # conv14: share of chat, replies, activations and refusals per hour
            "engagement": self.engagement.snapshot() if self.engagement is not None else None,
        }

    def _channel(self, config: ChannelConfig, state: ChannelState) -> dict[str, Any]:
        now_playing = state.now_playing
        video = None
        if now_playing is not None:
            position = now_playing.position
            if not now_playing.paused:
                position += time.monotonic() - now_playing.updated_at
            video = {
                "title": now_playing.media.title,
                "duration": now_playing.media.duration,
                "position_seconds": round(position, 1),
                "paused": now_playing.paused,
            }
        return {
            "channel": config.channel,
            "domain": config.domain,
            "personality": config.personality or self._settings.active_personality,
            "users": len(state.users),
            "video": video,
        }

    # --- gauges ------------------------------------------------------------------------------

    def _register_gauges(self) -> None:
        view = self._view
        registry = self.telemetry.registry

        def providers() -> dict[LabelValues, float]:
            manager = view.manager
            if manager is None:
                return {}
            return {
                (name, state): float(snapshot["state"] == state)
                for name, snapshot in manager.snapshot().items()
                for state in _STATES
            }

        def status() -> dict[LabelValues, float]:
            current = self.health()["status"]
            return {(s,): float(s == current) for s in _STATUSES}

        registry.gauge(
            "queue_depth", "Replies waiting for a worker.", lambda: {(): view.queue_depth}
        )
        registry.gauge(
            "nats_connected",
            "1 while connected to NATS.",
            lambda: {(): float(view.nats_connected)},
        )
        registry.gauge(
            "provider_state",
            "1 for each provider's current circuit state.",
            providers,
            ("provider", "state"),
        )
        registry.gauge("health_status", "1 for the current health status.", status, ("status",))
        registry.gauge(
            "paused", "1 while replies are paused.", lambda: {(): float(view.flags.paused)}
        )
        registry.gauge("dry_run", "1 while in dry-run.", lambda: {(): float(view.flags.dry_run)})
        registry.gauge(
            "channel_users",
            "Users present, per configured channel.",
            lambda: {(c.channel,): float(len(s.users)) for c, s in view.channel_states()},
            ("channel",),
        )
        registry.gauge(
            "uptime_seconds",
            "Seconds since the service started.",
            lambda: {(): view.uptime_seconds},
        )
