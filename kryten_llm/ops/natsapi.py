"""The bot's NATS-side operator surface: Services API, a command endpoint, a KV registry entry.

- Registered with the NATS Services API through nats-py's ``micro`` module, so
  ``nats micro ls`` / ``$SRV.PING`` / ``$SRV.INFO`` / ``$SRV.STATS`` see it like any Go or
  Rust service.
- ``kryten.<service>.command`` (request/reply, also a Services API endpoint): a JSON request
  ``{"command": ..., "token": ...}`` gets a JSON reply ``{"ok": true, ...}`` or
  ``{"ok": false, "error": ..., "errors"?: [{"path", "problem", "fix"}]}``. ``ping``,
  ``health``, ``stats`` and ``config`` are open; every other command is an operator action
  (pause, resume, reload, runtime changes; see :mod:`kryten_llm.ops.controls`) and needs the
  control token. Its arguments are ``value`` or, without it, the request's other keys
  (``{"command": "trigger", "token": T, "name": "popcorn", "probability": 0.5}``). Every
  instance of the service answers (each subscribes in a queue group of its own), so a reload
  reaches all of them. A malformed request gets an error reply, never a crash.
- The live instance is kept in the JetStream KV bucket ``kryten_services`` under its service
  name, refreshed by every heartbeat, with a TTL of three heartbeats (so the key vanishes
  soon after the bot dies) and deleted on shutdown. A server without JetStream only costs a
  warning.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog
from nats import micro
from nats.js.kv import KeyValue

from kryten_llm.bus.subjects import service_command
from kryten_llm.cluster.kv import open_bucket, replicas_for
from kryten_llm.errors import ControlError
from kryten_llm.ops.controls import Controls

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.micro.request import Request
    from nats.micro.service import Service as MicroService

log = structlog.get_logger(__name__)

KV_BUCKET = "kryten_services"
VIEWS = ("ping", "health", "stats", "config")


class CommandEndpoint:
    """The Services API registration and the ``kryten.<service>.command`` handler.

    Args:
        nc: the service's NATS connection.
        name: the service name (``service.name``).
        instance: this process's id: its own queue group, so every instance gets requests.
        version: a semantic version for the Services API.
        views: ``health``, ``stats`` and ``config`` callables returning JSON-able data.
        controls: the operator's switches (pause and resume go through them).
    """

    def __init__(
        self,
        nc: NATS,
        name: str,
        instance: str,
        version: str,
        *,
        views: dict[str, Callable[[], Any]],
        controls: Controls,
    ) -> None:
        self._nc = nc
        self._name = name
        self._instance = instance
        self._version = version
        self._views = views
        self._controls = controls
        self._service: MicroService | None = None

    async def start(self) -> None:
        self._service = await micro.add_service(
            self._nc,
            name=self._name,
            version=self._version,
            description="kryten-llm: an LLM chat bot for CyTube channels",
            metadata={"subject": service_command(self._name)},
        )
        await self._service.add_endpoint(
            name="command",
            subject=service_command(self._name),
            handler=self._handle,
            queue_group=f"{self._name}-{self._instance}",
        )

    async def stop(self) -> None:
        if self._service is not None:
            await self._service.stop()
            self._service = None

    async def _handle(self, request: Request) -> None:
        reply = await self.answer(request.data)
        await request.respond(json.dumps(reply, default=str).encode())

    async def answer(self, data: bytes) -> dict[str, Any]:
        """The reply to one command request (never raises)."""
        try:
            return await self._answer(data)
        except Exception:
            log.exception("command_failed")
            return {"ok": False, "error": "internal error (logged by the bot)"}

    async def _answer(self, data: bytes) -> dict[str, Any]:
        try:
            body = json.loads(data or b"{}")
        except ValueError:
            return {"ok": False, "error": 'not JSON: send {"command": "ping"}'}
        if not isinstance(body, dict) or not isinstance(body.get("command"), str):
            return {
                "ok": False,
                "error": 'send {"command": ...}: ping, health, stats, config, '
                "or an operator action with the control token",
            }
        command = body.pop("command")
        token = body.pop("token", None)
        if command == "ping":
            return {
                "ok": True,
                "pong": True,
                "service": self._name,
                "instance": self._instance,
                "version": self._version,
            }
        if command in self._views:
            return {"ok": True, command: self._views[command]()}
        by = body.pop("by", None)
        value = body.pop("value") if "value" in body else (body or None)
        origin = "nats" + (f" by {by}" if isinstance(by, str) and by else "")
        try:
            result = await self._controls.run(
                command, value, token=token if isinstance(token, str) else None, origin=origin
            )
        except ControlError as exc:
            return {"ok": False, "error": str(exc), **_errors(exc)}
        return {"ok": True, "instance": self._instance, **result}


def _errors(exc: ControlError) -> dict[str, Any]:
    """The key paths of an invalid configuration, when that is why an action was refused."""
    if not exc.errors:
        return {}
    return {"errors": [{"path": p, "problem": w, "fix": f} for p, w, f in exc.errors]}


class ServiceRegistry:
    """The instance's entry in the ``kryten_services`` KV bucket.

    Args:
        nc: the NATS connection.
        name: the key (the service name).
        ttl_seconds: how long an entry lives without a refresh.
        replicas: the bucket's replicas when it is created (``cluster.replicas``; ``None``:
            three in a cluster of three or more nodes, else one).
    """

    def __init__(
        self, nc: NATS, name: str, ttl_seconds: float, *, replicas: int | None = None
    ) -> None:
        self._nc = nc
        self._name = name
        self._ttl = ttl_seconds
        self._replicas = replicas  # ``cluster.replicas``; None: as the server's cluster allows
        self._kv: KeyValue | None = None
        self._unavailable = False

    async def _bucket(self) -> KeyValue | None:
        if self._kv is not None or self._unavailable:
            return self._kv
        # Opened like every shared bucket: created when missing, replicated in a cluster.
        try:
            kv = await open_bucket(
                self._nc, KV_BUCKET, ttl=self._ttl, replicas=replicas_for(self._nc, self._replicas)
            )
            ttl = (await kv.status()).ttl
        except Exception as exc:  # no JetStream on this server, no permission...
            self._unavailable = True
            log.warning(
                "kv_registry_unavailable",
                bucket=KV_BUCKET,
                error=str(exc) or type(exc).__name__,
                fix="enable JetStream on the NATS server to be listed in the bucket",
            )
            return self._kv
        if ttl and ttl < self._ttl:
            # The first service to create the shared bucket chose its TTL.
            log.warning(
                "kv_registry_ttl_short",
                bucket=KV_BUCKET,
                ttl_seconds=ttl,
                heartbeat_ttl_seconds=self._ttl,
                fix="the entry may expire between heartbeats: shorten "
                "service.heartbeat_interval_seconds or recreate the bucket",
            )
        self._kv = kv
        return kv

    async def on_lifecycle(self, event: str, body: dict[str, Any]) -> None:
        """Refresh the entry on startup and heartbeat; remove it on shutdown."""
        kv = await self._bucket()
        if kv is None:
            return
        try:
            if event == "shutdown":
                await kv.delete(self._name)
            else:
                await kv.put(self._name, json.dumps(body, default=str).encode())
        except Exception as exc:
            log.warning("kv_registry_write_failed", error=str(exc) or type(exc).__name__)
