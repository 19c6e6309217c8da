"""Claims with a time window in JetStream KV: "this title is ours for a while", across instances.

The bot comments on a video title at most once per window, also after a restart and when
several instances serve one channel. :class:`KVClaimStore` is the
:class:`~kryten_llm.bus.claims.ClaimStore` seam on a KV bucket (the file-backed store for a
server without JetStream stays in :mod:`kryten_llm.bus.claims`). A claim reads its key and
writes the time back only at the revision it read (:func:`~kryten_llm.cluster.kv.write_json`:
revision 0 creates the key), so of several instances claiming one title at once exactly one
wins. The bucket is opened like every other shared bucket (:func:`~kryten_llm.cluster.kv.
open_bucket`): a TTL (a claim older than its window says nothing) and three replicas in a
cluster of three nodes.

Keys are made by :func:`claim_key` from the channel's key (:attr:`ChannelConfig.key
<kryten_llm.config.ChannelConfig.key>`: CyTube channel names ignore case) and the title.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kryten_llm.bus.claims import stamp_of
from kryten_llm.cluster.kv import open_bucket, read_json, scoped_key, write_json

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.js.kv import KeyValue

_TTL_MARGIN = 3600.0  # a claim outlives its window by this much (clock skew, a late reload)


def claim_key(channel_key: str, text: str) -> str:
    """The key of ``text`` in the channel ``channel_key`` (``cytu.be/mychannel``).

    The text is compared without case and with runs of spaces as one, so "The  Thing" and
    "the thing" are the same title.
    """
    return scoped_key(channel_key, " ".join(text.casefold().split()))


class KVClaimStore:
    """Claims in a JetStream KV bucket, shared by every instance on the server."""

    def __init__(self, kv: KeyValue, bucket: str) -> None:
        self._kv = kv
        self._bucket = bucket

    @classmethod
    async def open(cls, nc: NATS, bucket: str, *, window: float, replicas: int) -> KVClaimStore:
        """Bind to ``bucket``, creating it when missing (values live ``window`` and an hour).

        Raises:
            ClusterError: JetStream is not available (the caller chooses another store).
        """
        ttl = window + _TTL_MARGIN
        return cls(await open_bucket(nc, bucket, ttl=ttl, replicas=replicas), bucket)

    @property
    def where(self) -> str:
        return f"kv:{self._bucket}"

    async def claimed_at(self, key: str) -> float | None:
        value, _ = await read_json(self._kv, key)
        return stamp_of(value)

    async def claim(self, key: str, now: float, window: float) -> bool:
        value, revision = await read_json(self._kv, key)
        at = stamp_of(value)
        if at is not None and now - at < window:
            return False
        # None: another instance claimed it between our read and write.
        return await write_json(self._kv, key, {"at": now}, revision) is not None
