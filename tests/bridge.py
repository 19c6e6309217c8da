"""A stand-in for Kryten-Robot built on kryten-py, publishing exactly what the bridge publishes.

PROTOCOL.md §13: a ``KrytenClient`` with no ``service`` block publishes the six-key envelope as a
plain dict on ``build_subject(domain, channel, event)``; commands are read raw from
``kryten.robot.command``. The harness reproduces by hand what the bridge does around that: the
routing guard (domain exact, channel ignoring case), acks only when the command was a request,
CyTube's echo of the bot's own ``say`` as a ``chatMsg`` and its 320-character cut.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
import structlog.testing
from kryten import KrytenClient
from kryten.subject_builder import build_subject
from structlog._config import BoundLoggerLazyProxy

from kryten_llm.bus.settle import settle


@dataclass
class Command:
    subject: str
    body: dict[str, Any]
    reply: str
    received_at: float


class FakeBridge:
    """Publishes CyTube events and records the commands the bot sends."""

    def __init__(
        self,
        nats_url: str,
        *,
        domain: str = "cytu.be",
        channel: str = "MyChannel",
        bot_username: str = "CynthiaRothbot",
        echo: bool = True,
    ) -> None:
        self.domain = domain
        self.channel = channel
        self.bot_username = bot_username
        self.echo = echo
        self.client = KrytenClient(
            {
                "nats": {"servers": [nats_url]},
                "channels": [{"domain": domain, "channel": channel}],
            }
        )
        self.commands: list[Command] = []  # accepted by the routing guard
        self.ignored: list[Command] = []  # refused by the routing guard
        self._arrived = asyncio.Event()

    async def __aenter__(self) -> FakeBridge:
        await self.client.connect()
        await self.client.subscribe("kryten.robot.command", self._on_command)
        assert self.client._nats is not None
        await settle(self.client._nats)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.disconnect()

    # -- events --------------------------------------------------------------------------

    async def publish(
        self,
        event_name: str,
        payload: Any,
        *,
        channel: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        """Publish one event exactly as the bridge does (envelope keys in its order)."""
        body = {
            "event_name": event_name,
            "payload": payload,
            "channel": channel or self.channel,
            "domain": self.domain,
            "timestamp": datetime.now(UTC).isoformat(),
            "correlation_id": correlation_id or str(uuid.uuid4()),
        }
        await self.client.publish(
            build_subject(self.domain, channel or self.channel, event_name), body
        )

    async def publish_raw(self, event_token: str, data: bytes) -> None:
        """Publish arbitrary bytes on an event subject of the channel."""
        await self.client.publish(
            f"kryten.events.cytube.{self.channel.lower()}.{event_token}", data
        )

    async def chat(
        self,
        username: str,
        text: str,
        *,
        time_ms: int | None = None,
        meta: dict[str, Any] | None = None,
        escape: bool = True,
        correlation_id: str | None = None,
    ) -> None:
        """A ``chatMsg`` as CyTube builds it: HTML-escaped text, no rank field."""
        await self.publish(
            "chatMsg",
            {
                "username": username,
                "msg": _cytube_escape(text) if escape else text,
                "meta": meta or {},
                "time": time_ms if time_ms is not None else int(time.time() * 1000),
            },
            correlation_id=correlation_id,
        )

    async def pm(self, username: str, text: str, *, to: str | None = None) -> None:
        await self.publish(
            "pm",
            {
                "username": username,
                "msg": _cytube_escape(text),
                "meta": {},
                "time": int(time.time() * 1000),
                "to": to or self.bot_username,
            },
        )

    async def userlist(self, users: list[tuple[str, float]]) -> None:
        await self.publish(
            "userlist",
            [
                {
                    "name": name,
                    "rank": rank,
                    "profile": {"image": "", "text": ""},
                    "meta": {"afk": False, "muted": False},
                }
                for name, rank in users
            ],
        )

    async def flush(self) -> None:
        assert self.client._nats is not None
        await settle(self.client._nats)

    # -- commands ------------------------------------------------------------------------

    async def _on_command(self, msg: Any) -> None:
        body = json.loads(msg.data)
        command = Command(msg.subject, body, msg.reply or "", time.monotonic())
        meta = body.get("meta") or {}
        if (
            "domain" in meta
            and "channel" in meta
            and (meta["domain"] != self.domain or meta["channel"].lower() != self.channel.lower())
        ):
            self.ignored.append(command)
            return
        self.commands.append(command)
        self._arrived.set()
        if msg.reply:
            ack = {
                "service": "robot",
                "command": body.get("command"),
                "success": True,
                "data": {"success": True},
            }
            await self.client.publish(msg.reply, ack)
        if self.echo and body.get("command") == "say":
            text = str(body["args"].get("message", ""))[:320]
            await self.chat(self.bot_username, text)

    async def wait_for_commands(self, count: int, timeout: float = 10.0) -> list[Command]:
        """Wait until at least ``count`` commands arrived; returns them all."""
        deadline = time.monotonic() + timeout
        while len(self.commands) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"got {len(self.commands)} of {count} commands")
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                continue
        return self.commands

    def says(self) -> list[str]:
        return [c.body["args"]["message"] for c in self.commands if c.body["command"] == "say"]


def _cytube_escape(text: str) -> str:
    """CyTube escapes & < > " ' ( ) as HTML entities before broadcasting chat."""
    escaped = html.escape(text, quote=True).replace("&#x27;", "&#39;")
    return escaped.replace("(", "&#40;").replace(")", "&#41;")


# Log events that mean an exception escaped the path it happened on.
FAILURE_EVENTS = frozenset({"event_handling_failed", "reply_failed", "nats_error"})


class Escapes:
    """Everything that escaped while the bot ran: failure log events, exceptions the event
    loop saw unhandled, and reply workers that died.

    ``with Escapes() as escapes:`` captures structlog output (``escapes.logs``) and installs a
    loop exception handler; ``escapes.check(workers)`` fails the test if anything escaped.
    """

    def __init__(self) -> None:
        self.logs: list[dict[str, Any]] = []
        self.unhandled: list[dict[str, Any]] = []
        self._capture: Any = None
        self._config: dict[str, Any] = {}
        self._old_handler: Any = None

    def __enter__(self) -> Escapes:
        # Another test may have configured logging for the process (level filter, cached
        # loggers): undo both for the capture, and restore the configuration afterwards.
        self._config = structlog.get_config()
        structlog.configure(
            wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
            cache_logger_on_first_use=False,
        )
        for module in list(sys.modules.values()):
            for value in list(getattr(module, "__dict__", {}).values()):
                if isinstance(value, BoundLoggerLazyProxy):
                    value.__dict__.pop("bind", None)  # the cached bound logger, if any
        self._capture = structlog.testing.capture_logs()
        self.logs = self._capture.__enter__()
        loop = asyncio.get_running_loop()
        self._old_handler = loop.get_exception_handler()
        loop.set_exception_handler(lambda _loop, context: self.unhandled.append(context))
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.get_running_loop().set_exception_handler(self._old_handler)
        self._capture.__exit__(*exc)
        structlog.configure(**self._config)

    def events(self, name: str) -> list[dict[str, Any]]:
        """The captured log entries named ``name``."""
        return [entry for entry in self.logs if entry.get("event") == name]

    def failures(self) -> list[dict[str, Any]]:
        return [entry for entry in self.logs if entry.get("event") in FAILURE_EVENTS]

    def check(self, workers: int) -> None:
        """Fail when a failure was logged, the loop saw an unhandled exception, or fewer than
        ``workers`` reply workers are still running (call it while the service runs)."""
        assert self.failures() == [], self.failures()[:3]
        assert self.unhandled == [], self.unhandled[:3]
        alive = [t for t in asyncio.all_tasks() if t.get_name().startswith("reply-worker-")]
        assert len(alive) == workers, f"{workers - len(alive)} reply worker(s) died"
