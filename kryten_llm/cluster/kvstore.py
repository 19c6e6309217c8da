"""Rate-limit windows and cooldowns in JetStream KV, shared by every instance of the bot.

The :class:`~kryten_llm.pipeline.ratelimit.RateLimitStore` seam with a KV backend: each limiter
key (``g``, ``u:alice``, ``m:alice``, ``t:popcorn``, ``w``) is one KV key holding the wall-clock
times of its hits within the hour, packed as 8-byte floats (a busy key holds an hour of hits:
no text is built or parsed per hit). The limiter decides on a :meth:`snapshot` (every key it
needs, each with its revision) and :meth:`commit` writes every key only if it is still at the
revision it was read at. Since every key that was read is written, two instances that decided
on overlapping keys cannot both commit: the second sees a changed revision, takes back what it
already wrote, and the limiter decides again on fresh values. So two instances together never
let through more than one would; in an exact race one may refuse a reply a single instance
would have sent (a hit taken back a moment later was counted meanwhile).

Snapshots are read from a copy of the bucket that a watch keeps current
(:class:`~kryten_llm.cluster.mirror.KeyMirror`): no request per decision. A copy that lags
only makes a commit fail (its revision is stale); the keys it failed on are then read from
JetStream for the next decision.

The limiter counts in monotonic time; the store converts to wall-clock time (the only clock
machines share) with an offset fixed at start.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import sys
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError

from kryten_llm.cluster.kv import readable_key, retrying
from kryten_llm.cluster.mirror import KeyMirror
from kryten_llm.pipeline.ratelimit import HOUR, RateLimitStore

if TYPE_CHECKING:
    from nats.js.kv import KeyValue

log = structlog.get_logger(__name__)

_ROLLBACK_ATTEMPTS = 5
# A value is this byte and the hits as little-endian float64 wall-clock seconds, oldest first:
# no text to build or parse per hit (a busy key holds an hour of hits). A value in the older
# form, a JSON list of numbers, is still read.
_PACKED = b"\x01"
_SWAP = sys.byteorder != "little"


def pack(hits: array[float]) -> bytes:
    """The KV value of ``hits`` (wall-clock seconds, oldest first)."""
    if _SWAP:
        hits = array("d", hits)
        hits.byteswap()
    return _PACKED + hits.tobytes()


def unpack(value: bytes | None) -> array[float]:
    """The hits of a KV value written by :func:`pack` (or a JSON list of numbers); a value
    that is neither is logged and read as no hits, so one bad key cannot stop every decision
    that reads it (the next write replaces it)."""
    hits: array[float] = array("d")
    if not value:
        return hits
    try:
        if value[:1] == _PACKED:
            hits.frombytes(memoryview(value)[1:])
            if _SWAP:
                hits.byteswap()
            return hits
        hits.extend(sorted(float(t) for t in json.loads(value)))
    except (ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
        log.warning("rate_limit_value_unreadable", error=str(exc), size=len(value))
        return array("d")
    return hits


async def _read(kv: KeyValue, key: str) -> tuple[bytes, int]:
    """The value of ``key`` and its revision (that of its delete marker, or 0, when absent: a
    write at that revision creates the key)."""
    try:
        entry = await kv.get(key)
    except KeyNotFoundError as exc:
        marker = getattr(exc, "entry", None)
        return b"", marker.revision if marker is not None else 0
    return entry.value or b"", entry.revision or 0


async def _write(
    kv: KeyValue, key: str, hits: array[float], revision: int, mirror: KeyMirror | None = None
) -> bool:
    """Write ``hits`` only if ``key`` is still at ``revision``; False when another came first."""
    value = pack(hits)
    try:
        written = await kv.update(key, value, last=revision)
    except KeyWrongLastSequenceError:
        return False
    if mirror is not None:
        mirror.note(key, value, written)
    return True


@dataclass(slots=True)
class Snapshot:
    """The hits of some keys (wall-clock, oldest first), the revisions they were read at, and
    the offset from the limiter's monotonic clock to wall-clock time."""

    offset: float
    hits: dict[str, array[float]] = field(default_factory=dict)
    revisions: dict[str, int] = field(default_factory=dict)

    async def count_since(self, key: str, since: float) -> int:
        hits = self.hits.get(key)
        if not hits:
            return 0
        return len(hits) - bisect.bisect_right(hits, since + self.offset)

    async def latest(self, key: str, n: int = 1) -> float | None:
        hits = self.hits.get(key)
        return hits[-n] - self.offset if hits and n <= len(hits) else None

    async def record(self, keys: Sequence[str], now: float) -> None:
        raise NotImplementedError("a snapshot is read-only: commit through the store")

    async def clear(self) -> None:
        raise NotImplementedError("a snapshot is read-only")

    async def withdraw(self, keys: Sequence[str], now: float) -> None:
        raise NotImplementedError("a snapshot is read-only: withdraw through the store")

    async def snapshot(self, keys: Sequence[str]) -> RateLimitStore:
        return self

    async def commit(self, snapshot: RateLimitStore, keys: Sequence[str], now: float) -> bool:
        raise NotImplementedError("a snapshot is read-only: commit through the store")


class SharedRateLimitStore:
    """Limiter hits in the KV bucket ``kv`` (its TTL drops keys idle for longer than an hour).

    Args:
        kv: the limits bucket.
        timeout: how long a read or write is retried while JetStream fails.
        horizon: hits older than this are dropped when a key is written.
        wall, monotonic: the clocks (injected in tests).
    """

    def __init__(
        self,
        kv: KeyValue,
        *,
        timeout: float,
        horizon: float = HOUR,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kv = kv
        self._timeout = timeout
        self._horizon = horizon
        self._offset = wall() - monotonic()
        self.conflicts = 0  # commits refused because another instance wrote first
        self.mirror = KeyMirror(kv, "limits")
        self._stale: set[str] = set()  # keys a commit lost on: read from JetStream next time

    async def start(self) -> None:
        """Keep a copy of the bucket by a watch: a decision then reads no key over the network."""
        await self.mirror.start()

    async def stop(self) -> None:
        await self.mirror.stop()

    async def snapshot(self, keys: Sequence[str]) -> RateLimitStore:
        snap = Snapshot(self._offset)
        remote = []
        for key in keys:
            name = readable_key(key)
            seen = self.mirror.get(name) if name not in self._stale else None
            if seen is None:
                remote.append(key)
            else:
                snap.hits[key], snap.revisions[key] = unpack(seen[0]), seen[1]
        if remote:
            values = await retrying(
                lambda: asyncio.gather(*(_read(self._kv, readable_key(key)) for key in remote)),
                self._timeout,
                what="read shared limits",
            )
            for key, (value, revision) in zip(remote, values, strict=True):
                snap.hits[key], snap.revisions[key] = unpack(value), revision
                name = readable_key(key)
                self._stale.discard(name)
                # What JetStream just said, even if older: a key that expired leaves no trace
                # in the watch, so the copy would keep its last value.
                self.mirror.put(name, value, revision)
        return snap

    async def commit(self, snapshot: RateLimitStore, keys: Sequence[str], now: float) -> bool:
        assert isinstance(snapshot, Snapshot)
        stamp = now + self._offset
        oldest = stamp - self._horizon

        async def write(key: str) -> bool:
            hits = snapshot.hits.get(key) or array("d")
            kept = hits[bisect.bisect_left(hits, oldest) :]
            bisect.insort(kept, stamp)  # another machine's clock may be ahead of ours
            revision = snapshot.revisions.get(key, 0)
            name = readable_key(key)
            done = await retrying(
                lambda: _write(self._kv, name, kept, revision, self.mirror),
                self._timeout,
                what="write shared limits",
            )
            if not done:  # another instance wrote it: our copy may lag behind
                self._stale.add(name)
            return done

        results = await asyncio.gather(*(write(key) for key in keys), return_exceptions=True)
        written = [key for key, ok in zip(keys, results, strict=True) if ok is True]
        if len(written) == len(keys):
            return True
        self.conflicts += 1
        await self._take_back(written, stamp)
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            raise failure
        return False

    async def withdraw(self, keys: Sequence[str], now: float) -> None:
        await self._take_back(keys, now + self._offset)

    async def _take_back(self, keys: Sequence[str], stamp: float) -> None:
        """Remove the hit ``stamp`` from ``keys`` (a commit that lost half way)."""
        for key in keys:
            name = readable_key(key)
            try:
                for _ in range(_ROLLBACK_ATTEMPTS):
                    value, revision = await _read(self._kv, name)
                    hits = unpack(value)
                    if stamp not in hits:
                        break
                    hits.remove(stamp)
                    if await _write(self._kv, name, hits, revision, self.mirror):
                        break
                else:  # kept losing races: the hit stays, which only makes the limit stricter
                    log.warning("rate_limit_rollback_failed", key=key)
            except Exception as exc:  # JetStream gone meanwhile: the same, stricter for a while
                log.warning("rate_limit_rollback_failed", key=key, error=str(exc) or repr(exc))

    # The rest of RateLimitStore, for callers outside acquire() (record, clear).

    async def count_since(self, key: str, since: float) -> int:
        return await (await self.snapshot([key])).count_since(key, since)

    async def latest(self, key: str, n: int = 1) -> float | None:
        return await (await self.snapshot([key])).latest(key, n)

    async def record(self, keys: Sequence[str], now: float) -> None:
        while not await self.commit(await self.snapshot(keys), keys, now):
            pass

    async def clear(self) -> None:
        """Forget every hit of every instance (the operator's "clear cooldowns")."""
        try:
            keys = await self._kv.keys()
        except NoKeysError:
            return
        await asyncio.gather(*(self._kv.purge(key) for key in keys))
