"""Hand chat messages to the bridge on ``kryten.robot.command``, paced per channel.

The body is exactly what kryten-py's ``send_chat``/``send_pm`` publish (PROTOCOL.md §4), with
the full ``meta`` so that the bridge's routing guard accepts it: ``domain`` exactly as configured
(the bridge compares it case-sensitively), ``channel``, ``source``, ``timestamp`` and a fresh
``request_id``. With ``await_ack`` the command goes out as a NATS request and the bridge's ack
("accepted", not "delivered") is awaited with a timeout and logged.

CyTube drops chat that floods (PROTOCOL.md §9), so messages to one channel are spaced by a
minimum gap plus jitter, and a ``cooldown`` or ``noflood`` event from CyTube pushes the next
send further out (a cooldown by 60 s at most), also for a send that is already waiting.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import structlog
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from kryten_llm.bus.subjects import COMMAND_SUBJECT
from kryten_llm.bus.wire import MAX_COOLDOWN_MS

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

    from kryten_llm.config import ChannelConfig, SendConfig

log = structlog.get_logger(__name__)

AckStatus = Literal["not_requested", "accepted", "refused", "timeout", "no_responders"]


@dataclass(frozen=True, slots=True)
class SendResult:
    """What happened to one command: its request id and, when asked for, the bridge's ack."""

    request_id: str
    ack: AckStatus = "not_requested"
    error: str | None = None


@dataclass(slots=True)
class _Pace:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    next_at: float = 0.0  # the next send may go out then (pacing and back-off together)
    held_until: float = 0.0  # the part of that CyTube asked for (cooldown, noflood)


def command_body(
    command: str, args: dict[str, Any], channel: ChannelConfig, source: str, request_id: str
) -> dict[str, Any]:
    """The unified command body of PROTOCOL.md §4, keys in kryten-py's order."""
    return {
        "command": command,
        "args": args,
        "meta": {
            "source": source,
            "timestamp": datetime.now(UTC).isoformat(),
            "domain": channel.domain,
            "channel": channel.channel,
            "request_id": request_id,
        },
    }


class ChatSender:
    """Publishes ``say`` and ``pm`` commands, one channel's messages at a time."""

    def __init__(
        self,
        nc: NATS,
        config: SendConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._nc = nc
        self._config = config
        self._clock = clock
        self._jitter = jitter
        self._sleep = sleep
        self._paces: dict[str, _Pace] = {}

    async def say(self, channel: ChannelConfig, text: str) -> SendResult:
        """Send ``text`` to the channel's public chat."""
        return await self._send(channel, "say", {"message": text})

    async def pm(self, channel: ChannelConfig, to: str, text: str) -> SendResult:
        """Send ``text`` as a private message to ``to``."""
        return await self._send(channel, "pm", {"to": to, "msg": text})

    def on_cooldown(self, channel: ChannelConfig, milliseconds: float) -> None:
        """CyTube said the bot flooded: send nothing to ``channel`` for that long.

        At most :data:`~kryten_llm.bus.wire.MAX_COOLDOWN_MS` (an infinite or longer cooldown
        counts as that much); NaN and negative values are ignored. A send already waiting
        waits for the new time too.
        """
        if math.isnan(milliseconds) or milliseconds < 0:
            log.warning("send_backoff_ignored", channel=channel.channel, milliseconds=milliseconds)
            return
        self._push_back(channel, min(milliseconds, MAX_COOLDOWN_MS) / 1000.0)

    def on_noflood(self, channel: ChannelConfig) -> None:
        """CyTube throttled the bot: back off by the configured time."""
        self._push_back(channel, self._config.noflood_backoff_seconds)

    def paused_for(self, channel: ChannelConfig) -> float:
        """Seconds CyTube still holds ``channel``'s sending back (cooldown, noflood); the
        bot's own pacing between two messages is not a pause."""
        pace = self._paces.get(channel.key)
        return max(pace.held_until - self._clock(), 0.0) if pace is not None else 0.0

    def _push_back(self, channel: ChannelConfig, seconds: float) -> None:
        pace = self._pace(channel)
        pace.held_until = max(pace.held_until, self._clock() + seconds)
        pace.next_at = max(pace.next_at, pace.held_until)
        log.warning("send_backoff", channel=channel.channel, seconds=round(seconds, 3))

    def _pace(self, channel: ChannelConfig) -> _Pace:
        key = channel.key
        pace = self._paces.get(key)
        if pace is None:
            pace = self._paces[key] = _Pace()
        return pace

    async def _send(self, channel: ChannelConfig, command: str, args: dict[str, Any]) -> SendResult:
        pace = self._pace(channel)
        async with pace.lock:
            # A cooldown may arrive while we sleep and move next_at further out: look again.
            while (wait := pace.next_at - self._clock()) > 0:
                await self._sleep(wait)
            request_id = str(uuid.uuid4())
            body = command_body(command, args, channel, self._config.source, request_id)
            data = json.dumps(body).encode()
            try:
                result = await self._publish(data, request_id)
            finally:
                gap = self._config.min_gap_seconds + self._jitter() * self._config.jitter_seconds
                pace.next_at = max(pace.next_at, self._clock() + gap)
        return result

    async def _publish(self, data: bytes, request_id: str) -> SendResult:
        if not self._config.await_ack:
            await self._nc.publish(COMMAND_SUBJECT, data)
            return SendResult(request_id)
        try:
            reply = await self._nc.request(
                COMMAND_SUBJECT, data, timeout=self._config.ack_timeout_seconds
            )
        except NatsTimeoutError:
            log.warning("command_ack_timeout", request_id=request_id)
            return SendResult(request_id, "timeout")
        except NoRespondersError:
            log.warning("command_no_responders", request_id=request_id)
            return SendResult(request_id, "no_responders")
        try:
            ack = json.loads(reply.data)
        except ValueError:
            ack = {}
        if isinstance(ack, dict) and ack.get("success") is True:
            return SendResult(request_id, "accepted")
        error = str(ack.get("error", "unreadable ack")) if isinstance(ack, dict) else "bad ack"
        log.warning("command_refused", request_id=request_id, error=error)
        return SendResult(request_id, "refused", error)
