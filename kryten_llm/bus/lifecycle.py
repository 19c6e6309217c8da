"""Announce the service on NATS the way Kryten services do (PROTOCOL.md §6).

- ``kryten.lifecycle.<name>.startup`` when ready, and again on every
  ``kryten.service.discovery.poll`` and every ``kryten.lifecycle.robot.startup`` (a restarted
  bridge rebuilds its registry from startup events only);
- ``kryten.lifecycle.<name>.heartbeat`` every interval (the bridge marks a service stale after
  90 s without one);
- ``kryten.lifecycle.<name>.shutdown`` with a reason when stopping;
- ``kryten.lifecycle.group.restart`` is honoured: after its ``delay_seconds`` the
  ``on_restart`` callback asks the service to stop so that systemd starts it again.

Bodies carry the base fields in the ecosystem's order (service, version, hostname, timestamp,
uptime_seconds), then ``instance_id`` when several instances of the service may run, plus a
``metadata`` object.

With ``service.mirror_subjects`` the startup event is also published on
``kryten.service.discovery`` and heartbeats on ``kryten.service.heartbeat`` and
``kryten.service.heartbeat.<name>``: not part of the bridge's protocol (PROTOCOL.md §6.2), but
what the ecosystem's planning documents tell operators to ``nats sub``. Listeners (the KV
registry) get every event with its body.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from kryten_llm.bus.subjects import (
    DISCOVERY_POLL,
    GROUP_RESTART,
    ROBOT_STARTUP,
    lifecycle,
    lifecycle_mirrors,
)
from kryten_llm.bus.wire import MAX_SHORT, Bad, load_body, number, optional_text

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

    from kryten_llm.config import ServiceConfig

log = structlog.get_logger(__name__)

_DEFAULT_RESTART_DELAY = 5.0
_MAX_RESTART_DELAY = 3600.0  # a longer (or non-finite) delay is not honoured as asked


class Lifecycle:
    """Publishes startup/heartbeat/shutdown and answers discovery for one service."""

    def __init__(
        self,
        nc: NATS,
        config: ServiceConfig,
        *,
        version: str,
        metadata: Callable[[], dict[str, Any]] = dict,
        on_restart: Callable[[str], None] | None = None,
        listeners: Sequence[Callable[[str, dict[str, Any]], Awaitable[None]]] = (),
        instance_id: str | None = None,
    ) -> None:
        self._nc = nc
        self._config = config
        self._version = version
        self._metadata = metadata
        self._on_restart = on_restart
        self._listeners = tuple(listeners)
        self._instance_id = instance_id  # several instances of one service (issue 15)
        self._hostname = socket.gethostname()
        self._started_at = time.monotonic()
        self._subs: list[Subscription] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.restart_requested = False
        self._stopped = False

    def base(self) -> dict[str, Any]:
        """The base fields every lifecycle body starts with."""
        base = {
            "service": self._config.name,
            "version": self._version,
            "hostname": self._hostname,
            "timestamp": datetime.now(UTC).isoformat(),
            "uptime_seconds": round(time.monotonic() - self._started_at, 3),
        }
        if self._instance_id is not None:
            base["instance_id"] = self._instance_id
        return base

    async def start(self) -> None:
        """Subscribe to discovery and restart notices, then announce startup."""
        for subject, handler in (
            (DISCOVERY_POLL, self._on_poll),
            (ROBOT_STARTUP, self._on_poll),
            (GROUP_RESTART, self._on_group_restart),
        ):
            self._subs.append(await self._nc.subscribe(subject, cb=handler))
        await self.announce()
        self._spawn(self._heartbeats())

    async def announce(self) -> None:
        """Publish (or re-publish) the startup event."""
        await self._publish("startup", {"metadata": self._metadata()})

    async def stop(self, reason: str) -> None:
        """Stop heartbeats and listening, then publish shutdown. A second call does nothing."""
        if self._stopped:
            return
        self._stopped = True
        for task in list(self._tasks):
            task.cancel()
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()
        if not self._nc.is_connected:
            log.warning("shutdown_not_announced", reason="nats_not_connected")
            return
        await self._publish("shutdown", {"reason": reason})

    async def _publish(self, event: str, extra: dict[str, Any]) -> None:
        body = {**self.base(), **extra}
        data = json.dumps(body, default=str).encode()
        name = self._config.name
        await self._nc.publish(lifecycle(name, event), data)
        if self._config.mirror_subjects:
            for subject in lifecycle_mirrors(name, event):
                await self._nc.publish(subject, data)
        log.debug("lifecycle_published", lifecycle_event=event)
        for listener in self._listeners:
            try:
                await listener(event, body)
            except Exception:
                log.exception("lifecycle_listener_failed", lifecycle_event=event)

    async def _heartbeats(self) -> None:
        """Beat every interval for the life of the service; a failed beat never ends the loop."""
        interval = self._config.heartbeat_interval_seconds
        while True:
            await asyncio.sleep(interval)
            if not self._nc.is_connected:
                continue
            try:
                await self._publish("heartbeat", {"metadata": self._metadata()})
            except Exception:  # NATS closing under us, a view that broke: try again next time
                log.exception("heartbeat_failed")

    async def _on_poll(self, msg: Msg) -> None:
        log.info("discovery_answered", trigger=msg.subject)
        self._spawn(self.announce())  # the callback returns at once; listeners may be slow

    async def _on_group_restart(self, msg: Msg) -> None:
        # Bytes from the wire: bounded and checked like events (nothing may reach nats-py).
        try:
            notice = load_body(msg.data or b"{}")
        except Bad:
            notice = {}
        if not isinstance(notice, dict):
            notice = {}
        try:
            delay = number(
                notice.get("delay_seconds", _DEFAULT_RESTART_DELAY), "delay", 0, _MAX_RESTART_DELAY
            )
        except Bad:
            delay = _DEFAULT_RESTART_DELAY
        initiator, reason = (
            optional_text(notice, key, limit=MAX_SHORT) for key in ("initiator", "reason")
        )
        log.warning(
            "group_restart_requested", initiator=initiator, reason=reason, delay_seconds=delay
        )
        self._spawn(self._restart_after(delay, reason))

    async def _restart_after(self, delay: float, reason: str) -> None:
        await asyncio.sleep(delay)
        self.restart_requested = True
        if self._on_restart is not None:
            self._on_restart(f"group restart: {reason}" if reason else "group restart")

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        """Forget a finished task; one that failed is logged, never silently dropped."""
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("lifecycle_task_failed", exc_info=task.exception())
