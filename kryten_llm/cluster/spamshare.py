"""Spam strikes and mutes in JetStream KV, so that an instance started later knows them.

Every instance runs the spam guard (:mod:`kryten_llm.pipeline.spam`) on every message aimed at
the bot, so running instances already agree. What KV adds is memory for an instance that was
not there: a new or restarted instance reads every user's standing before it subscribes to its
channels, and keeps a spammer the others muted muted. It also follows the bucket while running
(a KV watch, :class:`~kryten_llm.cluster.mirror.KeyMirror`, started again after a failure), so
an instance that missed a message (a reconnect) learns the strike from the others.

The guard stays in memory and synchronous: it runs in the NATS callback. A new offence is
handed to :meth:`SharedSpamStrikes.note`, which only records it (one pending standing per user,
at most :data:`MAX_PENDING` users; beyond that the write is dropped, counted and logged) and
wakes a writer task. A KV failure delays or drops a write; it never blocks the callback and
never changes what the guard decides on its own.

Writes are compare-and-set with a merge: read the user's record and its revision, merge ours
in (:func:`~kryten_llm.pipeline.spam.merged`: the later offence wins, two stamps of one offence
keep the harsher values), write only at that revision, and on a conflict read and merge again.
The merge is commutative and idempotent, so two instances writing the same offence (they both
saw the message) converge on one record, in either order, and no write replaces a harsher
standing by a milder one; a plain put would let the last writer undo the other's strike. A
merge that changes nothing writes nothing.

One key per user (the lower-cased name, hashed when it is not a valid key) holding
``{"user", "strikes", "last", "until"}`` in wall-clock seconds, the only clock machines share;
the guard counts in monotonic time and the store converts with an offset fixed at start. The
bucket's TTL is the longest a standing can matter (the longest penalty or forgiveness spell as
configured at start, and a margin): a record not rewritten for that long is forgiven anyway.

The operator's "clear cooldowns" forgives everyone everywhere (:meth:`SharedSpamStrikes.clear`):
the records are purged and a marker, :data:`CLEARED`, written with the time of the clear. An
instance that hears of a newer clear forgives every offence up to that time and from then on
ignores standings no later than it, whatever order they come in: a write that was in flight
during the clear, a restarted watch replaying the marker, an instance started later. Strikes
after the clear stand.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import structlog

from kryten_llm.cluster.kv import (
    open_bucket,
    purge_all,
    read_json,
    retrying,
    safe_key,
    write_json,
)
from kryten_llm.cluster.mirror import KeyMirror
from kryten_llm.errors import ClusterError
from kryten_llm.pipeline.spam import Standing, merged

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.js.kv import KeyValue

    from kryten_llm.config import SpamConfig
    from kryten_llm.pipeline.spam import SpamGuard

log = structlog.get_logger(__name__)

MAX_PENDING = 1000  # users with a standing not yet written; more are dropped (and counted)
_WRITE_ATTEMPTS = 5  # compare-and-set rounds lost to other writers before giving up
_TTL_MARGIN = 600.0
_STOP_FLUSH_SECONDS = 2.0
CLEARED = "operator.cleared"  # a "clear cooldowns"; user keys never hold a "."


def bucket_ttl(config: SpamConfig) -> float:
    """How long a standing is kept without being rewritten."""
    return max(config.max_penalty_seconds, config.forgive_after_seconds) + _TTL_MARGIN


def _to_json(standing: Standing) -> dict[str, Any]:
    return {
        "user": standing.username,
        "strikes": standing.strikes,
        "last": round(standing.last_offence, 3),
        "until": round(standing.penalty_until, 3),
    }


def _from_json(value: Any) -> Standing | None:
    """The standing in a record, ``None`` when it is not one (written by something else)."""
    if not isinstance(value, dict):
        return None
    user, strikes = value.get("user"), value.get("strikes")
    last, until = value.get("last"), value.get("until")
    if not isinstance(user, str) or not user or type(strikes) is not int:
        return None
    if not all(isinstance(t, int | float) and not isinstance(t, bool) for t in (last, until)):
        return None
    return Standing(user.lower(), strikes, float(last), float(until))  # type: ignore[arg-type]


class SharedSpamStrikes:
    """The spam guard's standings mirrored in one KV bucket, shared by every instance.

    Args:
        kv: the spam bucket.
        guard: the guard whose offences are shared and which takes in the others'.
        timeout: how long one read or write is retried while JetStream fails.
        wall, monotonic: the clocks (injected in tests).
    """

    def __init__(
        self,
        kv: KeyValue,
        guard: SpamGuard,
        *,
        timeout: float,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kv = kv
        self._guard = guard
        self._timeout = timeout
        self._offset = wall() - monotonic()
        self._monotonic = monotonic
        self._cleared_at = 0.0  # wall clock: the newest clear heard of; older standings are void
        self._pending: dict[str, Standing] = {}
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._tasks: list[asyncio.Task[None]] = []
        # Only the hook is used: the standings live in the guard, not in the copy.
        self._watch = KeyMirror(kv, "spam", on_entry=self._take)
        self._loaded: set[str] = set()  # keys of the standings read at start
        self.written = 0  # records written (a merge that changed nothing is not)
        self.dropped = 0  # offences not shared: too many pending
        self.failed = 0  # offences not shared: JetStream failed for the whole timeout

    @classmethod
    async def start(
        cls, nc: NATS, guard: SpamGuard, *, bucket: str, replicas: int, retry_seconds: float
    ) -> SharedSpamStrikes:
        """Open ``bucket``, take in every standing in it, then share and follow.

        Raises:
            ClusterError: JetStream could not be used within ``retry_seconds`` (the guard then
                keeps its standings to itself, as a single instance does).
        """
        kv = await open_bucket(nc, bucket, ttl=bucket_ttl(guard.config), replicas=replicas)
        store = cls(kv, guard, timeout=retry_seconds)
        await store._load()
        return store

    async def _load(self) -> None:
        """Follow the bucket (:class:`KeyMirror`): every current record first, then changes."""
        await self._watch.start()
        try:
            await asyncio.wait_for(self._watch.ready.wait(), self._timeout)
        except TimeoutError as exc:
            await self._watch.stop()
            raise ClusterError(f"read spam strikes: none within {self._timeout:g} s") from exc
        self._guard.on_strike = self.note
        self._tasks = [asyncio.create_task(self._write_loop(), name="spam-share-write")]
        log.info("spam_strikes_shared", loaded=self.loaded, adopted=self._guard.adopted)

    @property
    def loaded(self) -> int:
        """Standings read at start."""
        return len(self._loaded)

    @property
    def cleared_at(self) -> float:
        """Wall-clock time of the newest "clear cooldowns" heard of (0: none)."""
        return self._cleared_at

    @property
    def pending(self) -> int:
        """Users whose standing is waiting to be written."""
        return len(self._pending)

    def snapshot(self) -> dict[str, int]:
        """For ``/health`` (under ``cluster``): what was read, written, and not shared."""
        return {
            "loaded": self.loaded,
            "pending": self.pending,
            "written": self.written,
            "dropped": self.dropped,
            "failed": self.failed,
        }

    def note(self, standing: Standing) -> None:
        """A new offence (guard's clock), to be written; never waits (the NATS callback)."""
        key = standing.username
        if key not in self._pending and len(self._pending) >= MAX_PENDING:
            self.dropped += 1
            log.warning(
                "spam_strike_not_shared",
                username=key,
                why=f"{MAX_PENDING} writes pending",
                detail="this instance still penalises the user; others may not know yet",
            )
            return
        self._pending[key] = merged(self._pending.get(key), standing)
        self._drained.clear()
        self._wake.set()

    def _take(self, key: str, value: bytes | None) -> None:
        """A record from the watch: a standing of another instance (or our own, coming back)."""
        if not value:
            return  # a delete, a purge or an expiry marker: nothing to hold against anyone
        if key == CLEARED:
            self._cleared(value)
            return
        try:
            standing = _from_json(json.loads(value))
        except ValueError:
            standing = None
        if standing is None:
            log.warning("spam_record_unreadable", key=key)
            return
        if standing.last_offence <= self._cleared_at:
            return  # forgiven by a clear (written late, or read before its marker)
        if not self._tasks:  # still loading (a watch started again brings them again: a set)
            self._loaded.add(key)
        self._guard.adopt(standing.shifted(-self._offset))

    def _cleared(self, value: bytes) -> None:
        """The marker of a clear: forgive what happened up to its time, once (a watch started
        again replays it; strikes and messages since are kept)."""
        try:
            at = float(json.loads(value)["at"])
        except (ValueError, TypeError, KeyError):
            log.warning("spam_record_unreadable", key=CLEARED)
            return
        if at > self._cleared_at:
            self._cleared_at = at
            self._guard.clear(before=at - self._offset)

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                key = next(iter(self._pending))
                standing = self._pending.pop(key).shifted(self._offset)
                try:
                    await retrying(
                        partial(self._write, standing), self._timeout, what="write spam strikes"
                    )
                except ClusterError as exc:
                    self.failed += 1
                    log.warning("spam_strike_not_shared", username=key, error=str(exc))
            self._drained.set()

    async def _write(self, standing: Standing) -> None:
        """Merge ``standing`` (wall clock) into its record with compare-and-set."""
        key = safe_key(standing.username)
        for _ in range(_WRITE_ATTEMPTS):
            if standing.last_offence <= self._cleared_at:
                return  # forgiven by a clear while it waited
            value, revision = await read_json(self._kv, key)
            stored = _from_json(value)
            if stored is not None and stored.last_offence <= self._cleared_at:
                stored = None  # a record from before a clear, written late: forgiven
            result = merged(stored, standing)
            if result == stored:
                return
            if await write_json(self._kv, key, _to_json(result), revision) is not None:
                self.written += 1
                return
        log.warning("spam_strike_conflicts", username=standing.username, attempts=_WRITE_ATTEMPTS)

    async def clear(self) -> None:
        """Forgive everyone on every instance (the operator's "clear cooldowns"): the waiting
        writes are dropped, every record purged and the :data:`CLEARED` marker written.

        Raises:
            ClusterError: JetStream failed for the whole timeout.
        """
        self._pending.clear()
        at = self._offset + self._monotonic()
        self._cleared_at = max(self._cleared_at, at)  # a write in flight is dropped
        await retrying(partial(self._clear, at), self._timeout, what="clear spam strikes")

    async def _clear(self, at: float) -> None:
        await purge_all(self._kv, keep=CLEARED)
        await self._kv.put(CLEARED, json.dumps({"at": at}).encode())

    async def stop(self) -> None:
        """Stop sharing: the pending writes get a moment, then the tasks end. Idempotent."""
        if self._guard.on_strike == self.note:
            self._guard.on_strike = None
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), _STOP_FLUSH_SECONDS)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._watch.stop()
