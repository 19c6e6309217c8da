"""The JetStream KV helpers every shared piece of state uses: buckets, keys, compare-and-set.

One place for how the bot opens a bucket (create it when missing, with a TTL and as many
replicas as the NATS cluster has room for), turns arbitrary text into a valid key, and reads
and writes a JSON value guarded by its revision. Claims, shared rate limits, spam strikes, the
video titles already commented, the instance registry, channel leases and the entry in the
ecosystem's ``kryten_services`` bucket are built on these; so can any other state that moves
to KV.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from nats.js.errors import (
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoKeysError,
)

from kryten_llm.errors import ClusterError

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.js.kv import KeyValue

log = structlog.get_logger(__name__)

_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_DOTTED_KEY = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
_CLUSTER_SIZE_FOR_R3 = 3
_FIRST_BACKOFF = 0.05
_MAX_BACKOFF = 0.5
T = TypeVar("T")


def bucket_name(service: str, purpose: str) -> str:
    """The bucket of one kind of shared state of one service: ``kryten_llm_claims``."""
    return f"kryten_{service}_{purpose}"


def _digest(text: str, length: int) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:length]


def safe_key(text: str) -> str:
    """``text`` when it is a valid KV key token, else a stable hash of it (never empty)."""
    if _PLAIN_KEY.match(text):
        return text
    return "h" + _digest(text, 40)


def scoped_key(scope: str, text: str) -> str:
    """One key per ``text`` within ``scope``: ``cytu.be/mychannel`` and a title give
    ``cytu.be.mychannel.<hash of the title>`` (the scope readable, the text always hashed)."""
    return f"{readable_key(scope)}.{_digest(text, 32)}"


def readable_key(text: str) -> str:
    """``u:alice`` -> ``u.alice``, ``cytu.be/MyChannel`` -> ``cytu.be.MyChannel``: readable in
    ``nats kv ls`` when the result is a valid key, a stable hash otherwise."""
    dotted = text.replace(":", ".").replace("/", ".")
    return dotted if _DOTTED_KEY.match(dotted) else safe_key(text)


def replicas_for(nc: NATS, wanted: int | None) -> int:
    """``wanted``, or 3 when the server is part of a cluster of three or more nodes, else 1."""
    if wanted is not None:
        return wanted
    info = getattr(nc, "_server_info", None) or {}
    if not info.get("cluster"):
        return 1
    # connect_urls lists every node's client address (the server's own included).
    nodes = len(info.get("connect_urls") or ())
    return _CLUSTER_SIZE_FOR_R3 if nodes >= _CLUSTER_SIZE_FOR_R3 else 1


async def open_bucket(
    nc: NATS, name: str, *, ttl: float, replicas: int, wait: float = 2.0
) -> KeyValue:
    """The bucket ``name``, created (history 1, ``ttl`` seconds per value) when missing.

    A bucket that already exists is used as it is (whoever created it chose its TTL and
    replicas); fewer replicas than ``replicas`` is logged (``kv_bucket_replicas_low``) with
    the fix, because its state would not survive the loss of a node.

    Raises:
        ClusterError: JetStream is not available (not enabled, no permission, no quorum).
    """
    js = nc.jetstream(timeout=wait)
    try:
        try:
            kv = await js.key_value(name)
        except BucketNotFoundError:
            return await js.create_key_value(bucket=name, ttl=ttl, history=1, replicas=replicas)
    except Exception as exc:
        raise ClusterError(f"bucket {name}: {str(exc) or type(exc).__name__}") from exc
    if replicas > 1:
        await _check_replicas(kv, name, replicas)
    return kv


async def _check_replicas(kv: KeyValue, name: str, wanted: int) -> None:
    """Say when an existing bucket has fewer copies than wanted (best effort: a bucket
    electing its leader may not answer yet, and is usable all the same)."""
    try:
        replicas = (await kv.status()).stream_info.config.num_replicas or 1
    except Exception:
        return
    if replicas < wanted:
        log.warning(
            "kv_bucket_replicas_low",
            bucket=name,
            replicas=replicas,
            wanted=wanted,
            fix=f"it was created before the cluster grew: delete the bucket {name} (its "
            "state is rebuilt) or raise its stream's replicas, then restart",
        )


async def read_raw(kv: KeyValue, key: str) -> tuple[bytes, int]:
    """The value of ``key`` (empty when absent) and its revision.

    The revision of an absent key is that of its delete marker (0 if it never existed), so
    :func:`write_raw` with it creates the key.
    """
    try:
        entry = await kv.get(key)
    except KeyNotFoundError as exc:
        marker = getattr(exc, "entry", None)
        return b"", marker.revision if marker is not None else 0
    return entry.value or b"", entry.revision or 0


async def write_raw(kv: KeyValue, key: str, value: bytes, revision: int) -> int | None:
    """Write ``value`` only if ``key`` is still at ``revision``; the new revision, or
    ``None`` when another writer came first (read again and retry)."""
    try:
        return await kv.update(key, value, last=revision)
    except KeyWrongLastSequenceError:
        return None


async def read_json(kv: KeyValue, key: str) -> tuple[Any, int]:
    """:func:`read_raw` as JSON: ``(None, revision)`` when absent."""
    value, revision = await read_raw(kv, key)
    return (json.loads(value) if value else None), revision


async def write_json(kv: KeyValue, key: str, value: Any, revision: int) -> int | None:
    """:func:`write_raw` of ``value`` as compact JSON."""
    return await write_raw(kv, key, json.dumps(value, separators=(",", ":")).encode(), revision)


async def purge_all(kv: KeyValue, *, keep: str = "") -> list[str]:
    """Purge every key of ``kv`` but ``keep``; the keys purged."""
    try:
        keys = [key for key in await kv.keys() if key != keep]
    except NoKeysError:
        return []
    await asyncio.gather(*(kv.purge(key) for key in keys))
    return keys


async def retrying(
    call: Callable[[], Awaitable[T]],
    seconds: float,
    *,
    what: str,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """``await call()``, tried again with backoff while JetStream fails, for ``seconds``.

    A NATS cluster that loses a node needs a moment to elect new leaders; a call made then
    fails or times out, and the same call shortly after succeeds.

    Raises:
        ClusterError: still failing when ``seconds`` ran out.
    """
    deadline = clock() + seconds
    delay = _FIRST_BACKOFF
    while True:
        try:
            async with asyncio.timeout(max(deadline - clock(), 0.001)):
                return await call()
        except Exception as exc:  # timeouts, no responders, no quorum, a reconnecting client
            if clock() + delay >= deadline:
                raise ClusterError(f"{what}: {str(exc) or type(exc).__name__}") from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_BACKOFF)
