"""Exactly one instance answers each message: the first to create its claim key wins.

Every instance sees every event (the bridge publishes to all subscribers) and keeps full
channel state; when a message would be answered, each instance tries ``create`` on the KV key of
the message's correlation id. JetStream accepts exactly one create per key, across machines and
across the nodes of a NATS cluster, so exactly one instance goes on to answer. The value is the
winner's instance id: when the acknowledgement of our own create was lost (a node failing over)
and the retry finds the key taken, reading it back tells us whether we are the winner.

While JetStream cannot be reached the claim is retried for ``claim_timeout_seconds``; after that
the message is not answered here (:attr:`ClaimResult.FAILED`): at most once, never twice.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

import structlog
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from kryten_llm.cluster.kv import retrying, safe_key
from kryten_llm.errors import ClusterError

if TYPE_CHECKING:
    from nats.js.kv import KeyValue


log = structlog.get_logger(__name__)


class ClaimResult(StrEnum):
    WON = "won"  # this instance answers
    LOST = "lost"  # another instance answers
    FAILED = "failed"  # JetStream unreachable for the whole timeout: nobody here answers


class Claims:
    """Create-if-absent claims in one KV bucket.

    Args:
        kv: the claims bucket (its TTL is how long a claim is remembered).
        instance_id: written as the claim's value.
        timeout_seconds: how long to keep retrying while JetStream fails.
    """

    def __init__(
        self,
        kv: KeyValue,
        instance_id: str,
        timeout_seconds: float,
    ) -> None:
        self._kv = kv
        self._me = instance_id.encode()
        self._timeout = timeout_seconds
        self.failures = 0  # claims given up on (JetStream unreachable)

    async def claim(self, message_key: str) -> ClaimResult:
        """Claim the message ``message_key`` (a correlation id) for this instance."""
        key = safe_key(message_key)
        try:
            return await retrying(lambda: self._try(key), self._timeout, what="claim")
        except ClusterError as exc:
            self.failures += 1
            log.warning(
                "claim_failed",
                key=key,
                error=str(exc),
                detail="JetStream unreachable: not answered here (never twice)",
            )
            return ClaimResult.FAILED

    async def _try(self, key: str) -> ClaimResult:
        try:
            await self._kv.create(key, self._me)
        except KeyWrongLastSequenceError:
            try:
                entry = await self._kv.get(key)
            except KeyNotFoundError:  # expired between the two calls: try again
                return await self._try(key)
            return ClaimResult.WON if entry.value == self._me else ClaimResult.LOST
        return ClaimResult.WON
