"""Channels spread out: with ``sharding`` on, an instance answers only where it holds a lease.

A lease is a KV key per channel whose value is the holder's instance id; the bucket's TTL is
``sharding.lease_seconds``, and the holder renews its leases every third of it with a
compare-and-set on the revision it holds (so a lease that expired and was taken by another
instance is noticed, not overwritten). Each instance aims at its share, the number of channels
divided by the live instances (rounded up): it releases leases above its share and takes free
channels below it. So 12 channels over 3 instances settle at 4 each, and the channels of an
instance that died come free when its leases expire and are taken at the others' next look:
within ``lease_seconds`` plus a third of it.

A lease counts as held only while its last renewal is younger than ``lease_seconds``: an
instance cut off from JetStream stops answering before another can take its channels.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import structlog
from nats.js.errors import KeyWrongLastSequenceError

from kryten_llm.cluster.kv import readable_key

if TYPE_CHECKING:
    from nats.js.kv import KeyValue

log = structlog.get_logger(__name__)


class ChannelLeases:
    """The leases this instance holds on its configured channels.

    Args:
        kv: the leases bucket.
        instance_id: written as each lease's value.
        channels: the channel keys (``ChannelConfig.key``) to share out.
        lease_seconds: how long a lease lives without renewal.
    """

    def __init__(
        self,
        kv: KeyValue,
        instance_id: str,
        channels: Sequence[str],
        lease_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kv = kv
        self._me = instance_id.encode()
        self._lease = lease_seconds
        self._clock = clock
        # Instances look at free channels from different starting points: fewer collisions.
        start = zlib.crc32(self._me) % max(len(channels), 1)
        ordered = sorted(channels)
        self._channels = ordered[start:] + ordered[:start]
        self._held: dict[str, tuple[int, float]] = {}  # channel key -> (revision, renewed at)

    def holds(self, channel: str) -> bool:
        """Whether this instance answers in ``channel`` now."""
        lease = self._held.get(channel)
        return lease is not None and self._clock() - lease[1] < self._lease

    @property
    def held(self) -> list[str]:
        return sorted(c for c in self._held if self.holds(c))

    async def tick(self, instances: int) -> None:
        """Renew, release the surplus, take free channels up to this instance's share."""
        share = math.ceil(len(self._channels) / max(instances, 1))
        for channel, (revision, _) in list(self._held.items()):
            await self._renew(channel, revision)
        for channel in sorted(self._held, reverse=True)[: max(len(self._held) - share, 0)]:
            await self._release(channel)
        for channel in self._channels:
            if len(self._held) >= share:
                break
            if channel not in self._held:
                await self._take(channel)

    async def _renew(self, channel: str, revision: int) -> None:
        sent = self._clock()  # the lease runs from before the server stored it: never longer
        try:
            new = await self._kv.update(readable_key(channel), self._me, last=revision)
        except KeyWrongLastSequenceError:  # it expired and someone else has it now
            del self._held[channel]
            log.warning("channel_lease_lost", channel=channel)
            return
        self._held[channel] = (new, sent)

    async def _take(self, channel: str) -> None:
        sent = self._clock()
        try:
            revision = await self._kv.create(readable_key(channel), self._me)
        except KeyWrongLastSequenceError:  # held by another instance
            return
        self._held[channel] = (revision, sent)
        log.info("channel_lease_taken", channel=channel)

    async def _release(self, channel: str) -> None:
        revision, _ = self._held.pop(channel)
        try:
            await self._kv.delete(readable_key(channel), last=revision)
        except KeyWrongLastSequenceError:
            return
        log.info("channel_lease_released", channel=channel)

    async def release_all(self) -> None:
        """Give every lease back (clean shutdown): the others take them at their next look."""
        for channel in list(self._held):
            await self._release(channel)
