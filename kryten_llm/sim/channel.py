"""A simulated CyTube channel behind a simulated Kryten-Robot bridge, on any NATS server.

It publishes exactly what the bridge publishes (PROTOCOL.md §2-3): the six-key envelope in the
bridge's key order, serialised with default ``json.dumps``, a ``+00:00`` UTC timestamp, a fresh
UUID4 correlation id, chat HTML-escaped the way CyTube escapes it, no ``rank`` in ``chatMsg``.
It answers the bot's commands on ``kryten.robot.command`` the way the bridge and CyTube do: the
routing guard (domain exact, channel ignoring case) drops commands for other channels, an ack
goes back only to a request, and a ``say`` comes back as a ``chatMsg`` from the bot's account,
cut at CyTube's 320 characters.
"""

from __future__ import annotations

import html
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kryten_llm.bus.settle import settle
from kryten_llm.bus.subjects import COMMAND_SUBJECT, event_subject

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

CYTUBE_MAX_CHAT = 320


def cytube_escape(text: str) -> str:
    """HTML-escape chat as CyTube does: ``& < > " ' ( )`` become entities."""
    escaped = html.escape(text, quote=True).replace("&#x27;", "&#39;")
    return escaped.replace("(", "&#40;").replace(")", "&#41;")


@dataclass(frozen=True, slots=True)
class SentCommand:
    """A command the bot sent that passed the routing guard."""

    command: str
    text: str
    to: str | None
    body: dict[str, Any]


def _user(name: str, rank: float) -> dict[str, Any]:
    """A user as CyTube lists them in ``userlist`` and ``addUser``."""
    return {
        "name": name,
        "rank": rank,
        "profile": {"image": "", "text": ""},
        "meta": {"afk": False, "muted": False},
    }


class SimulatedChannel:
    """Publishes one channel's events and plays CyTube for the bot's commands."""

    def __init__(
        self,
        nc: NATS,
        *,
        domain: str = "cytu.be",
        channel: str = "MyChannel",
        bot_username: str = "CynthiaRothbot",
        on_chat: Callable[[str, str, str, bool], None] | None = None,
    ) -> None:
        """Args:
        nc: a connected NATS client.
        domain, channel: the channel as the bridge would be configured.
        bot_username: the bot's CyTube account (its ``say`` comes back under this name).
        on_chat: called with (username, text, correlation_id, is_pm) for every chat line
            published, the bot's echoes included.
        """
        self._nc = nc
        self.domain = domain
        self.channel = channel
        self.bot_username = bot_username
        self._on_chat = on_chat
        self.commands: list[SentCommand] = []
        self.refused = 0
        self._sub: Subscription | None = None

    async def start(self) -> None:
        """Listen for the bot's commands."""
        self._sub = await self._nc.subscribe(COMMAND_SUBJECT, cb=self._on_command)
        await settle(self._nc)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    async def publish(self, event_name: str, payload: Any) -> str:
        """Publish one event as the bridge would; returns its correlation id."""
        correlation_id = str(uuid.uuid4())
        body = {
            "event_name": event_name,
            "payload": payload,
            "channel": self.channel,
            "domain": self.domain,
            "timestamp": datetime.now(UTC).isoformat(),
            "correlation_id": correlation_id,
        }
        subject = event_subject(self.channel, event_name)
        await self._nc.publish(subject, json.dumps(body).encode())
        return correlation_id

    async def chat(self, username: str, text: str) -> str:
        """A public chat line from ``username``."""
        correlation_id = await self.publish(
            "chatMsg",
            {
                "username": username,
                "msg": cytube_escape(text[:CYTUBE_MAX_CHAT]),
                "meta": {},
                "time": int(time.time() * 1000),
            },
        )
        if self._on_chat is not None:
            self._on_chat(username, text, correlation_id, False)
        return correlation_id

    async def pm(self, username: str, text: str, to: str) -> str:
        """A private message; CyTube sends it to the recipient and back to the sender."""
        correlation_id = await self.publish(
            "pm",
            {
                "username": username,
                "msg": cytube_escape(text[:CYTUBE_MAX_CHAT]),
                "meta": {},
                "time": int(time.time() * 1000),
                "to": to,
            },
        )
        if self._on_chat is not None:
            self._on_chat(username, f"(PM to {to}) {text}", correlation_id, True)
        return correlation_id

    async def userlist(self, users: list[tuple[str, float]]) -> None:
        await self.publish("userlist", [_user(name, rank) for name, rank in users])

    async def join(self, name: str, rank: float) -> None:
        """``addUser``: someone entered the channel."""
        await self.publish("addUser", _user(name, rank))

    async def leave(self, name: str) -> None:
        """``userLeave``: someone left."""
        await self.publish("userLeave", {"name": name})

    async def change_media(self, uid: int, media_id: str, title: str, seconds: int) -> None:
        """``setCurrent`` then ``changeMedia``, in the order CyTube sends them."""
        await self.publish("setCurrent", uid)
        hours, rest = divmod(seconds, 3600)
        minutes, secs = divmod(rest, 60)
        duration = f"{hours:02d}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
        await self.publish(
            "changeMedia",
            {
                "id": media_id,
                "title": title[:100],
                "seconds": seconds,
                "duration": duration,
                "type": "yt",
                "meta": {},
                "currentTime": 0,
                "paused": False,
            },
        )

    async def _on_command(self, msg: Msg) -> None:
        try:
            body = json.loads(msg.data)
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        meta = body.get("meta") or {}
        if (
            "domain" in meta
            and "channel" in meta
            and (
                meta["domain"] != self.domain
                or str(meta["channel"]).lower() != self.channel.lower()
            )
        ):
            self.refused += 1  # the bridge's routing guard: silently not ours
            return
        command = body.get("command")
        args = body.get("args") or {}
        if msg.reply:
            ack = {
                "service": "robot",
                "command": command,
                "success": True,
                "data": {"success": True},
            }
            await self._nc.publish(msg.reply, json.dumps(ack).encode())
        if command == "say":
            text = str(args.get("message") or args.get("msg") or "")
            self.commands.append(SentCommand("say", text, None, body))
            await self.chat(self.bot_username, text)
        elif command == "pm":
            text = str(args.get("message") or args.get("msg") or "")
            to = str(args.get("username") or args.get("to") or "")
            self.commands.append(SentCommand("pm", text, to, body))
            await self.pm(self.bot_username, text, to)
