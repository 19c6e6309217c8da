"""Who is running: this instance's entry in the instances bucket, and the peers seen there.

Each instance puts its entry (instance id, host, pid, channels it holds) every
``cluster.heartbeat_seconds``; the bucket's TTL is ``cluster.peer_ttl_seconds``, so the entry
of an instance that died (SIGKILL, host lost) vanishes within that time, and the peers count
of every other instance drops at its next beat. Sharding divides the channels by that count;
``/health`` shows it. The entry is removed on a clean shutdown.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nats.js.errors import NoKeysError

if TYPE_CHECKING:
    from nats.js.kv import KeyValue

_NOT_ID = re.compile(r"[^A-Za-z0-9_-]+")


def default_instance_id(cwd: Path | None = None) -> str:
    """The host name and a short hash of the working directory: stable across restarts,
    different for two instances on one machine (they run from different directories)."""
    where = str((cwd or Path.cwd()).resolve())
    host = _NOT_ID.sub("-", socket.gethostname()).strip("-")[:48] or "host"
    return f"{host}-{hashlib.sha256(where.encode()).hexdigest()[:8]}"


class Registry:
    """This instance's entry and the live instances of the service.

    Args:
        kv: the instances bucket (TTL: how long a silent instance still counts).
        instance_id: this instance.
    """

    def __init__(self, kv: KeyValue, instance_id: str) -> None:
        self._kv = kv
        self.instance_id = instance_id
        self._started = time.time()
        self.peers: tuple[str, ...] = (instance_id,)  # every live instance, this one included

    async def beat(self, extra: dict[str, Any]) -> tuple[str, ...]:
        """Refresh this instance's entry, then read who else is alive."""
        body = {
            "instance_id": self.instance_id,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": self._started,
            **extra,
        }
        await self._kv.put(self.instance_id, json.dumps(body).encode())
        try:
            found = await self._kv.keys()
        except NoKeysError:  # expired between the two calls
            found = []
        self.peers = tuple(sorted({*found, self.instance_id}))
        return self.peers

    async def leave(self) -> None:
        """Remove the entry (clean shutdown): peers stop counting this instance at once."""
        await self._kv.delete(self.instance_id)
