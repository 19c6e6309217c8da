"""An explore run seen and stopped from the bot's dashboard, over NATS.

``kryten-llm explore --nats`` publishes the run's snapshot once a second on
``kryten.<service>.explore.progress`` (with a ``run`` id and ``final: true`` on the last one) and
stops cleanly when ``kryten.<service>.explore.stop`` carries its id (or ``"*"``). The bot's
operator surface listens to the first and publishes the second when the operator presses
stop, so an explore run in its own process shows up next to the bot that will use its lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Callable
from typing import Any

import nats
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

log = structlog.get_logger(__name__)


def progress_subject(service: str) -> str:
    return f"kryten.{service}.explore.progress"


def stop_subject(service: str) -> str:
    return f"kryten.{service}.explore.stop"


def run_id(folder: str) -> str:
    """A run's id: where it writes, on which host, in which process."""
    return f"{socket.gethostname()}:{os.getpid()}:{folder}"


class ExploreLink:
    """Publishes a run's progress and listens for a stop.

    Args:
        servers: NATS URLs.
        service: the bot's service name (the subjects' second token).
        run: this run's id.
        snapshot: the explorer's snapshot.
        stop: called once when a stop for this run arrives.
        interval: seconds between progress messages.
    """

    def __init__(
        self,
        servers: list[str],
        service: str,
        run: str,
        snapshot: Callable[[], dict[str, Any]],
        stop: Callable[[], None],
        interval: float = 1.0,
    ) -> None:
        self._servers = servers
        self._service = service
        self._run = run
        self._snapshot = snapshot
        self._stop = stop
        self._interval = interval
        self._nc: NATS | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> bool:
        """Connect (one quick try: exploring works without a bot) and start publishing."""
        try:
            self._nc = await nats.connect(
                servers=self._servers,
                connect_timeout=2,
                max_reconnect_attempts=3,
                allow_reconnect=True,
                name="kryten-llm-explore",
            )
        except Exception as exc:
            log.warning("explore_not_announced", servers=self._servers, error=str(exc))
            self._nc = None
            return False
        await self._nc.subscribe(stop_subject(self._service), cb=self._on_stop)
        await self._nc.flush()
        self._task = asyncio.create_task(self._publish_loop())
        return True

    async def close(self) -> None:
        """Publish the final snapshot, then disconnect."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._publish(final=True)
                await self._nc.drain()

    async def _publish_loop(self) -> None:
        while True:
            await self._publish(final=False)
            await asyncio.sleep(self._interval)

    async def _publish(self, *, final: bool) -> None:
        assert self._nc is not None
        body = {"run": self._run, "final": final, **self._snapshot()}
        await self._nc.publish(
            progress_subject(self._service), json.dumps(body, default=str).encode()
        )

    async def _on_stop(self, msg: Msg) -> None:
        try:
            wanted = json.loads(msg.data).get("run")
        except (ValueError, AttributeError):
            return
        if wanted in (self._run, "*"):
            log.warning("explore_stop_requested", run=self._run)
            self._stop()
