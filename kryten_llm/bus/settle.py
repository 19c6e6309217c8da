"""Wait until everything a NATS client has sent so far has been processed by the server.

``nc.flush()`` in nats-py 2.16 writes its PING straight to the socket while earlier SUB and
PUB commands may still sit in the client's pending buffer, waiting for the flusher task; the
PONG can then come back before the server has seen them. A second round trip is always ordered
after the first flush's buffered commands, so two flushes give the guarantee one should.
Used where order matters: "subscribed, then announce ready".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS


async def settle(nc: NATS, per_trip_seconds: float = 5.0) -> None:
    """Return once the server has processed every command ``nc`` sent before the call.

    Raises:
        nats.errors.FlushTimeoutError: no answer from the server within ``per_trip_seconds``.
    """
    seconds = max(1, round(per_trip_seconds))
    await nc.flush(timeout=seconds)
    await nc.flush(timeout=seconds)
