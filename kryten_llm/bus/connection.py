"""The bot's NATS connection: connect with backoff while the server is away, close cleanly.

nats-py retries a first connection by itself, endlessly, whatever ``allow_reconnect`` says; we
let it, and lengthen its wait after every failed attempt from the error callback, which also
logs each attempt (``nats_unreachable`` with the attempt and the next wait). A stop request
cancels the attempt. Once connected, nats-py reconnects by itself at the configured pace for
as long as it takes; disconnects and reconnects are logged.

:func:`subscribe_events` subscribes the channel events so that a burst cannot starve the
socket reader (see its docstring).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import structlog
from nats.aio.client import Client as NATS
from nats.aio.subscription import Subscription

from kryten_llm.config.redact import redact_url
from kryten_llm.errors import BusError

if TYPE_CHECKING:
    from nats.aio.msg import Msg

    from kryten_llm.config import NatsConfig

log = structlog.get_logger(__name__)

_FIRST_RETRY_SECONDS = 0.25  # doubled before the first retry

# Handled events between two turns of the event loop (see subscribe_events). Each turn costs a
# few microseconds; 32 events cost ~300 us of handling, so the socket is read every ~0.3 ms.
# Measured (bench/bench_burst.py, server max_pending 4 MB, 200,000 lines): 32 and 64 keep the
# server's backlog well under the limit; 256 let it reach 3.5 of 4 MB and a test burst lost
# lines. Reading ahead costs ingest throughput under a flood (objects held, colder caches):
# bench_ingest ~71,000/s before, ~61,000/s with 32, ~67,000/s with 256.
YIELD_EVERY = 32
# What nats-py may hold for the events subscription once read off the socket: a backlog the
# bot has not handled yet. Past either limit nats-py drops the event (its slow-consumer error)
# instead of the server cutting the whole connection. Sized for a burst of half a million
# ordinary chat lines (~330 bytes each) with room to spare; a held event costs ~0.7 KB of
# memory besides its payload, so the worst case is bounded at a few hundred MB and a burst
# that large is gone again in seconds (the bot handles ~80,000 lines/s on two cores).
EVENT_PENDING_MSGS = 1_000_000
EVENT_PENDING_BYTES = 256 * 1024 * 1024
# The collector's first threshold while events are subscribed (CPython's default is 700). During
# a burst the events read ahead wait in nats-py's queue, each a tracked object, so the backlog
# grows by one object a line: with 700 the collector ran every ~700 lines and walked the
# backlog again in every older generation, ~0.7 us per line in all (bench_burst, 200,000 lines:
# 0.15 s of collection). With 50,000 the backlog is walked about once (~0.2 us per line).
# Objects freed by reference counting never count, so a bot at rest collects as rarely as
# before; what waits longer is cyclic garbage, at most this many objects.
COLLECT_EVERY = 50_000


def collect_rarely() -> None:
    """Raise the collector's first threshold to :data:`COLLECT_EVERY` (never lower it): for the
    process of a bot that takes in events, once, before it subscribes."""
    first, *older = gc.get_threshold()
    if first < COLLECT_EVERY:
        gc.set_threshold(COLLECT_EVERY, *older)


async def connect(
    cfg: NatsConfig, stop: asyncio.Event, *, running: Callable[[], bool]
) -> NATS | None:
    """Connect, retrying with exponential backoff until connected or ``stop`` is set.

    Args:
        cfg: the ``nats`` section.
        stop: set to give up (returns ``None``).
        running: whether the service is up; errors are logged as ``nats_error`` only then.

    Raises:
        BusError: NATS refused the connection for good (bad credentials, say).
    """
    nc = NATS()
    connected = asyncio.Event()
    options: dict[str, Any] = {
        "servers": cfg.servers,
        "name": cfg.connection_name,
        "connect_timeout": cfg.connect_timeout_seconds,
        "reconnect_time_wait": _FIRST_RETRY_SECONDS,
        "max_reconnect_attempts": -1,
        "allow_reconnect": True,
        "error_cb": _on_error(nc, cfg, connected, running),
        "disconnected_cb": _on_disconnected(running),
        "reconnected_cb": _on_reconnected,
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
        servers = _shown(cfg.servers)
        log.error("nats_connect_failed", servers=servers, error=str(exc) or repr(exc))
        raise BusError(f"cannot connect to NATS at {', '.join(servers)}: {exc}") from exc
    connected.set()
    # From now on nats-py reconnects by itself at the configured pace, for as long as it takes.
    nc.options["reconnect_time_wait"] = cfg.reconnect_wait_seconds
    url = nc.connected_url
    log.info("nats_connected", server=f"{url.hostname}:{url.port}" if url else "")
    return nc


def _on_error(
    nc: NATS, cfg: NatsConfig, connected: asyncio.Event, running: Callable[[], bool]
) -> Callable[[Exception], Awaitable[None]]:
    attempts = 0

    async def on_error(exc: Exception) -> None:
        nonlocal attempts
        error = str(exc) or type(exc).__name__
        if not connected.is_set():
            attempts += 1
            wait = min(float(nc.options["reconnect_time_wait"]) * 2, cfg.initial_retry_max_seconds)
            nc.options["reconnect_time_wait"] = wait  # read by nats-py before its next try
            log.warning(
                "nats_unreachable",
                servers=_shown(cfg.servers),
                attempt=attempts,
                error=error,
                retry_in=round(wait, 2),
            )
        elif running():
            log.warning("nats_error", error=error)

    return on_error


def _on_disconnected(running: Callable[[], bool]) -> Callable[[], Awaitable[None]]:
    async def on_disconnected() -> None:
        if running():
            log.warning("nats_disconnected")

    return on_disconnected


async def _on_reconnected() -> None:
    log.info("nats_reconnected")


def _shown(servers: list[str]) -> list[str]:
    """Server URLs as they may be logged: credentials in a URL are masked."""
    return [redact_url(url) for url in servers]


async def close(nc: NATS) -> None:
    """Drain (flush what we published, let subscriptions finish), bounded; then close."""
    if nc.is_connected:
        try:
            await asyncio.wait_for(nc.drain(), 2.0)
        except Exception as exc:
            log.warning("nats_drain_failed", error=str(exc) or type(exc).__name__)
    if not nc.is_closed:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 1.0)


async def subscribe_events(
    nc: NATS, subject: str, handle: Callable[[str, bytes], Awaitable[None] | None]
) -> Subscription:
    """Subscribe ``handle(subject, data)`` to ``subject`` without starving the socket reader.

    ``handle`` does its work before it returns, or returns an awaitable that finishes it
    (awaited here, in order): most events then cost no coroutine of their own.

    nats-py hands the callback one message after another from the subscription's queue, and
    the bot's handling of an ordinary line never suspends, so during a burst the callback task
    kept the event loop until the queue was empty, and the socket was read once per
    ~700 handled lines. The rest piled up in nats-server, which cuts a client off once 64 MB
    wait for it (a "slow consumer": every line queued for it is lost). Yielding every
    :data:`YIELD_EVERY` events lets the loop read the socket in between, so the backlog moves
    into this process, under the pending limits chosen above, and the server holds little.

    The process that subscribes events also calls :func:`collect_rarely` (the service does).

    Returns:
        the subscription.
    """
    handled = 0

    async def on_message(msg: Msg) -> None:
        nonlocal handled
        rest = handle(msg.subject, msg.data)
        if rest is not None:
            await rest
        handled += 1
        if handled == YIELD_EVERY:
            handled = 0
            await asyncio.sleep(0)

    return await nc.subscribe(
        subject,
        cb=on_message,
        pending_msgs_limit=EVENT_PENDING_MSGS,
        pending_bytes_limit=EVENT_PENDING_BYTES,
    )
