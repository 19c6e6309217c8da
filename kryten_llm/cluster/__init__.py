"""Several instances of the bot on one NATS: each message answered once, shared limits, failover,
channels spread out. See :mod:`kryten_llm.cluster.coordinator`."""

from kryten_llm.cluster.claim import ClaimResult, Claims
from kryten_llm.cluster.coordinator import Coordinator, Mode, message_key
from kryten_llm.cluster.kvstore import SharedRateLimitStore
from kryten_llm.cluster.leases import ChannelLeases
from kryten_llm.cluster.registry import Registry, default_instance_id

__all__ = [
    "ChannelLeases",
    "ClaimResult",
    "Claims",
    "Coordinator",
    "Mode",
    "Registry",
    "SharedRateLimitStore",
    "default_instance_id",
    "message_key",
]
