"""An explore run seen and stopped from the bot's dashboard, over NATS.

``kryten-llm explore --nats`` publishes the run's snapshot once a second on
``kryten.<service>.explore.progress`` (with a ``run`` id and ``final: true`` on the last one) and
stops cleanly when ``kryten.<service>.explore.stop`` carries its id (or ``"*"``). The bot's
operator surface listens to the first and publishes the second when the operator presses
stop, so an explore run in its own process shows up next to the bot that will use its lines.

The link never breaks the run: a server that goes away (and stays away past a few reconnect
attempts) is logged once as ``explore_link_failed`` and the run carries on unannounced.
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

from kryten_llm.bus.subjects import explore_progress, explore_stop

log = structlog.get_logger(__name__)

# Best effort: a server that stays away for a few seconds ends the announcement, not the run.
RECONNECT_ATTEMPTS = 3
RECONNECT_WAIT = 1.0
CLOSE_TIMEOUT = 5.0


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
                max_reconnect_attempts=RECONNECT_ATTEMPTS,
                reconnect_time_wait=RECONNECT_WAIT,
                allow_reconnect=True,
                name="kryten-llm-explore",
                error_cb=self._on_error,
            )
        except Exception as exc:
            log.warning("explore_not_announced", servers=self._servers, error=str(exc))
            self._nc = None
            return False
        await self._nc.subscribe(explore_stop(self._service), cb=self._on_stop)
        await self._nc.flush()
        self._task = asyncio.create_task(self._publish_loop())
        return True

    async def close(self) -> None:
        """Publish the final snapshot, then disconnect. Never raises: the run's files matter,
        the announcement does not."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        nc, self._nc = self._nc, None
        if nc is None:
            return
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._publish(nc, final=True)
                await nc.drain()
        except Exception as exc:  # server gone, reconnecting, or too slow: just let go
            log.debug("explore_link_close_failed", error=repr(exc))
            with contextlib.suppress(Exception):
                await nc.close()

    async def _publish_loop(self) -> None:
        """Publish every ``interval`` until cancelled; a failure is logged once, not raised.

        A closed connection (the server stayed away longer than the reconnect attempts) ends
        the loop: the run goes on unannounced.
        """
        assert self._nc is not None
        nc = self._nc
        failing = False
        while True:
            try:
                await self._publish(nc, final=False)
            except Exception as exc:
                if not failing:
                    log.warning("explore_link_failed", run=self._run, error=repr(exc))
                failing = True
                if nc.is_closed:
                    return
            else:
                failing = False
            await asyncio.sleep(self._interval)

    async def _publish(self, nc: NATS, *, final: bool) -> None:
        body = {"run": self._run, "final": final, **self._snapshot()}
        await nc.publish(explore_progress(self._service), json.dumps(body, default=str).encode())

    async def _on_error(self, exc: Exception) -> None:
        # The client reports every failed reconnect; the loop above reports what matters.
        log.debug("explore_link_error", error=repr(exc))

    async def _on_stop(self, msg: Msg) -> None:
        try:
            wanted = json.loads(msg.data).get("run")
        except (ValueError, AttributeError):
            return
        if wanted in (self._run, "*"):
            log.warning("explore_stop_requested", run=self._run)
            self._stop()
