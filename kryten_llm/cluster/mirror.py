"""A local copy of a KV bucket, kept current by a watch: reads without a round trip.

The shared rate limiter reads the windows it decides on for every reply; asking JetStream each
time costs a request per key. A :class:`KeyMirror` watches the bucket (every key's latest value
and revision, then every change, pushed by the server) so the read is a dictionary lookup. A
copy can lag behind the bucket by a moment; that is safe for a user that writes with
compare-and-set on the revision it read: a stale revision makes the write fail, and the user
reads from JetStream itself and decides again. Writes of this instance are noted at once
(:meth:`note`), so its own decisions never see a stale copy of what it wrote itself.

A user that acts on each change instead of reading (the shared spam strikes) passes
``on_entry``: it is called with every key and value the watch brings (``None`` for a deleted,
purged or expired key), the bucket's content at start first. The watch is started again after
a failure (a reconnect, a node failing over) and then brings the whole content again.

A user whose every write is compare-and-set may :meth:`pause` the watch while it expects no
other writer (the shared limits of an instance alone in the registry): the watch would only
echo its own writes back, each decoded and pushed through the client for nothing. The copy
then holds what was seen and written here; a write of another instance meanwhile makes the
next compare-and-set on that key fail, which is the same as a copy that lags. :meth:`follow`
starts the watch again (it brings the whole content again).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from nats.js.kv import KeyValue

log = structlog.get_logger(__name__)

_RESTART_DELAY = 0.5


class KeyMirror:
    """Every key of ``kv`` with its value and revision, as last seen.

    Args:
        kv: the bucket to mirror.
        name: for logs.
        on_entry: told of every key and value the watch brings (``None``: gone), instead of
            keeping a copy.
    """

    def __init__(
        self,
        kv: KeyValue,
        name: str,
        *,
        on_entry: Callable[[str, bytes | None], None] | None = None,
    ) -> None:
        self._kv = kv
        self._name = name
        self._on_entry = on_entry
        self._entries: dict[str, tuple[bytes, int]] = {}
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()  # set once the bucket's content at start is in
        self.paused = False  # the watch stopped on purpose: the copy holds what was written here

    def get(self, key: str) -> tuple[bytes, int] | None:
        """The value and revision of ``key``; ``None`` when the copy is not known to be
        current for it (not yet caught up: ask JetStream)."""
        if not self.ready.is_set():
            return None
        return self._entries.get(key, (b"", 0))

    def note(self, key: str, value: bytes, revision: int) -> None:
        """This instance wrote ``value`` at ``revision`` (newer than anything seen)."""
        seen = self._entries.get(key)
        if seen is None or seen[1] < revision:
            self._entries[key] = (value, revision)

    def put(self, key: str, value: bytes, revision: int) -> None:
        """JetStream itself was just asked: ``key`` holds ``value`` at ``revision``."""
        if self.ready.is_set():
            self._entries[key] = (value, revision)

    async def start(self) -> None:
        """Start watching; returns at once (reads fall back to JetStream until caught up)."""
        self.paused = False
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"kv-mirror {self._name}")

    async def stop(self) -> None:
        """Stop watching; idempotent."""
        self.paused = False
        await self._end()
        self.ready.clear()

    async def pause(self) -> None:
        """Stop the watch but keep the copy, once it is caught up (else nothing happens):
        reads go on from the copy, which only :meth:`note` and :meth:`put` change now."""
        if self.ready.is_set() and not self.paused:
            self.paused = True
            await self._end()
            self.ready.set()  # the watch's end cleared it: the copy is still ours to read
            log.info("kv_mirror_paused", bucket=self._name, keys=len(self._entries))

    async def follow(self) -> None:
        """Watch again after :meth:`pause` (reads fall back to JetStream until caught up)."""
        if self.paused:
            self.ready.clear()
            await self.start()
            log.info("kv_mirror_following", bucket=self._name)

    async def _end(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self._watch()
            except Exception as exc:  # NATS reconnecting, a node failing over: watch again
                self.ready.clear()
                log.warning(
                    "kv_mirror_restarting", bucket=self._name, error=str(exc) or type(exc).__name__
                )
            await asyncio.sleep(_RESTART_DELAY)

    async def _watch(self) -> None:
        watcher = await self._kv.watchall()
        try:
            async for entry in watcher:
                if entry is None:  # the content at start is in: reads may use the copy
                    self.ready.set()
                    continue
                # A deleted, purged or expired key is empty at its marker's revision.
                value = entry.value if entry.operation is None else None
                if self._on_entry is not None:  # the hook keeps what it needs: no copy
                    self._on_entry(entry.key, value or None)
                else:
                    self.note(entry.key, value or b"", entry.revision or 0)
        finally:
            self.ready.clear()
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]  # nats-py: untyped
