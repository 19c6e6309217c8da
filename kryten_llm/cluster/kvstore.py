"""Rate-limit windows and cooldowns in JetStream KV, shared by every instance of the bot.

The :class:`~kryten_llm.pipeline.ratelimit.RateLimitStore` seam with a KV backend. The limiter
keys (``g``, ``u:alice``, ``m:alice``, ``t:popcorn``, ``w``) are kept in **records**, one KV
value each: a user's keys in one (``user.alice``), the bot-wide keys in another (``bot``), so a
reply writes two values whatever its limits (it was one per key: three for a mention, four for
a trigger word). The records' names are new with this layout: during a rolling upgrade the
instances of the one-key layout (``u.alice``, ``g`` ...) and of this one never read each
other's values; each side keeps its own limits until every instance runs this one. A record
holds each key's wall-clock hit times within the hour, packed as 8-byte floats (a busy key
holds an hour of hits: no text is built or parsed per hit). The limiter
decides on a :meth:`snapshot` (the records it needs, each with its revision) and :meth:`commit`
writes every record only if it is still at the revision it was read at. Since every record
that was read is written, two instances that decided on overlapping keys cannot both commit:
the second sees a changed revision, takes back what it already wrote, and the limiter decides
again on fresh values. So two instances together never let through more than one would; in an
exact race one may refuse a reply a single instance would have sent (a hit taken back a moment
later was counted meanwhile).

Snapshots are read from a copy of the bucket that a watch keeps current
(:class:`~kryten_llm.cluster.mirror.KeyMirror`): no request per decision. A copy that lags
only makes a commit fail (its revision is stale); the records it failed on are then read from
JetStream for the next decision.

The limiter counts in monotonic time; the store converts to wall-clock time (the only clock
machines share) with an offset fixed at start.
"""

from __future__ import annotations

import asyncio
import bisect
import struct
import sys
import time
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from kryten_llm.cluster.kv import purge_all, read_raw, readable_key, retrying, write_raw
from kryten_llm.cluster.mirror import KeyMirror
from kryten_llm.pipeline.ratelimit import HOUR, Hits

if TYPE_CHECKING:
    from nats.js.kv import KeyValue

log = structlog.get_logger(__name__)

_ROLLBACK_ATTEMPTS = 5
# A record is this byte, then for each limiter key it holds: its name's length in bytes and
# its number of hits (little-endian u16, u32), the name (UTF-8), and the hits as little-endian
# float64 wall-clock seconds, oldest first: no text to build or parse per hit.
_RECORD = b"\x02"
_HEAD = struct.Struct("<HI")
_SWAP = sys.byteorder != "little"
_USER_KINDS = ("u:", "m:")
_BOT_KINDS = ("g", "w")


def record_of(key: str) -> str:
    """The record (one KV value) that holds the hits of the limiter key ``key``.

    A user's keys (``u:alice``, ``m:alice``) share the record ``user:alice``, the bot-wide
    keys (``g``, ``w``, ``t:<word>``) the record ``bot``, within the limiter's scope
    (``<channel>|``) if any; a reply then writes two values, not one per key. Any other key is
    a record of its own. Every instance maps a key to the same record, which is all
    compare-and-set needs; no record is named as a key of the one-key layout was.
    """
    scope, bar, rest = key.partition("|")
    if not bar:
        scope, rest = "", key
    else:
        scope += bar
    kind = rest[:2]
    if kind in _USER_KINDS:
        return f"{scope}user:{rest[2:]}"
    if rest in _BOT_KINDS or kind == "t:":
        return f"{scope}bot"
    return f"{scope}key:{rest}"


def _floats(data: memoryview) -> array[float]:
    hits: array[float] = array("d")
    hits.frombytes(data)  # a length not a multiple of 8 (a torn value) raises ValueError
    if _SWAP:
        hits.byteswap()
    return hits


def pack(record: Mapping[str, array[float]]) -> bytes:
    """The KV value of ``record``: the hits (wall-clock seconds, oldest first) of each of its
    limiter keys; a key without hits is left out."""
    parts = [_RECORD]
    for key, hits in record.items():
        if not hits:
            continue
        name = key.encode("utf-8", "surrogatepass")
        if _SWAP:
            hits = array("d", hits)
            hits.byteswap()
        parts += (_HEAD.pack(len(name), len(hits)), name, hits.tobytes())
    return b"".join(parts)


def unpack(value: bytes | None) -> dict[str, array[float]]:
    """The hits of each key in a KV value written by :func:`pack`. A value that is not one is
    logged and read as no hits, so one bad value cannot stop every decision that reads it (the
    next write replaces it)."""
    if not value:
        return {}
    view = memoryview(value)
    try:
        if value[:1] == _RECORD:
            record: dict[str, array[float]] = {}
            at, size = 1, len(view)
            while at < size:
                length, count = _HEAD.unpack_from(view, at)
                at += _HEAD.size
                name = bytes(view[at : at + length]).decode("utf-8", "surrogatepass")
                at += length
                if at + 8 * count > size:
                    raise ValueError("torn record")
                record[name] = _floats(view[at : at + 8 * count])
                at += 8 * count
            return record
        raise ValueError(f"not a record (first byte {value[:1]!r})")
    except (ValueError, struct.error) as exc:
        log.warning("rate_limit_value_unreadable", error=str(exc), size=len(value))
        return {}


def group(keys: Sequence[str]) -> dict[str, list[str]]:
    """``keys`` by the record that holds them (see :func:`record_of`)."""
    records: dict[str, list[str]] = {}
    for key in keys:
        records.setdefault(record_of(key), []).append(key)
    return records


async def _write(
    kv: KeyValue,
    key: str,
    record: Mapping[str, array[float]],
    revision: int,
    mirror: KeyMirror | None = None,
) -> bool:
    """Write ``record`` only if ``key`` is still at ``revision``; False when another came
    first."""
    value = pack(record)
    written = await write_raw(kv, key, value, revision)
    if written is None:
        return False
    if mirror is not None:
        mirror.note(key, value, written)
    return True


_NONE: array[float] = array("d")


@dataclass(slots=True)
class Snapshot:
    """The records that hold some keys (by record: each key's hits, wall-clock, oldest first),
    the revisions they were read at, and the offset from the limiter's monotonic clock to
    wall-clock time."""

    offset: float
    records: dict[str, dict[str, array[float]]] = field(default_factory=dict)
    revisions: dict[str, int] = field(default_factory=dict)

    def hits(self, key: str) -> array[float]:
        record = self.records.get(record_of(key))
        return (record.get(key) if record else None) or _NONE

    async def count_since(self, key: str, since: float) -> int:
        hits = self.hits(key)
        return len(hits) - bisect.bisect_right(hits, since + self.offset)

    async def latest(self, key: str, n: int = 1) -> float | None:
        hits = self.hits(key)
        return hits[-n] - self.offset if hits and n <= len(hits) else None


class SharedRateLimitStore:
    """Limiter hits in the KV bucket ``kv`` (its TTL drops keys idle for longer than an hour).

    Args:
        kv: the limits bucket.
        timeout: how long a read or write is retried while JetStream fails.
        horizon: hits older than this are dropped when a key is written.
        wall, monotonic: the clocks (injected in tests).
    """

    remote = True

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

    async def share(self, peers: bool) -> None:
        """Watch the bucket while other instances may write it (``peers``); alone, keep the
        copy without the watch, which would only echo this instance's own writes: another
        writer meanwhile only makes a compare-and-set fail (see :meth:`KeyMirror.pause`)."""
        await (self.mirror.follow() if peers else self.mirror.pause())

    async def snapshot(self, keys: Sequence[str]) -> Hits:
        snap = Snapshot(self._offset)
        remote = []
        for record in group(keys):
            name = readable_key(record)
            seen = self.mirror.get(name) if name not in self._stale else None
            if seen is None:
                remote.append(record)
            else:
                snap.records[record] = unpack(seen[0])
                snap.revisions[record] = seen[1]
        if remote:
            values = await retrying(
                lambda: asyncio.gather(*(read_raw(self._kv, readable_key(r)) for r in remote)),
                self._timeout,
                what="read shared limits",
            )
            for record, (value, revision) in zip(remote, values, strict=True):
                snap.records[record] = unpack(value)
                snap.revisions[record] = revision
                name = readable_key(record)
                self._stale.discard(name)
                # What JetStream just said, even if older: a key that expired leaves no trace
                # in the watch, so the copy would keep its last value.
                self.mirror.put(name, value, revision)
        return snap

    async def commit(self, snapshot: Hits, keys: Sequence[str], now: float) -> bool:
        assert isinstance(snapshot, Snapshot)
        stamp = now + self._offset
        oldest = stamp - self._horizon

        async def write(record: str, hit: list[str]) -> bool:
            kept: dict[str, array[float]] = {}
            for key, hits in snapshot.records.get(record, {}).items():
                kept[key] = hits[bisect.bisect_left(hits, oldest) :]
            for key in hit:
                # another machine's clock may be ahead of ours
                bisect.insort(kept.setdefault(key, array("d")), stamp)
            revision = snapshot.revisions.get(record, 0)
            name = readable_key(record)
            done = await retrying(
                lambda: _write(self._kv, name, kept, revision, self.mirror),
                self._timeout,
                what="write shared limits",
            )
            if not done:  # another instance wrote it: our copy may lag behind
                self._stale.add(name)
            return done

        records = group(keys)
        results = await asyncio.gather(
            *(write(record, hit) for record, hit in records.items()), return_exceptions=True
        )
        if all(ok is True for ok in results):
            return True
        self.conflicts += 1
        written = [
            key
            for hit, ok in zip(records.values(), results, strict=True)
            if ok is True
            for key in hit
        ]
        await self._take_back(written, stamp)
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            raise failure
        return False

    async def withdraw(self, keys: Sequence[str], now: float) -> None:
        await self._take_back(keys, now + self._offset)

    async def _take_back(self, keys: Sequence[str], stamp: float) -> None:
        """Remove the hit ``stamp`` from ``keys`` (a commit that lost half way)."""
        for record, hit in group(keys).items():
            name = readable_key(record)
            try:
                for _ in range(_ROLLBACK_ATTEMPTS):
                    value, revision = await read_raw(self._kv, name)
                    content = unpack(value)
                    found = [content[k] for k in hit if stamp in content.get(k, _NONE)]
                    if not found:
                        break
                    for hits in found:
                        hits.remove(stamp)
                    if await _write(self._kv, name, content, revision, self.mirror):
                        break
                else:  # kept losing races: the hit stays, which only makes the limit stricter
                    log.warning("rate_limit_rollback_failed", key=record)
            except Exception as exc:  # JetStream gone meanwhile: the same, stricter for a while
                log.warning("rate_limit_rollback_failed", key=record, error=str(exc) or repr(exc))

    # The rest of RateLimitStore, for callers outside admit() (record, clear).

    async def count_since(self, key: str, since: float) -> int:
        return await (await self.snapshot([key])).count_since(key, since)

    async def latest(self, key: str, n: int = 1) -> float | None:
        return await (await self.snapshot([key])).latest(key, n)

    async def record(self, keys: Sequence[str], now: float) -> None:
        while not await self.commit(await self.snapshot(keys), keys, now):
            pass

    async def clear(self) -> None:
        """Forget every hit of every instance (the operator's "clear cooldowns")."""
        keys = await purge_all(self._kv)
        self._stale.update(keys)  # a paused copy would keep them: read them from JetStream
