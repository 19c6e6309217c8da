"""Several instances of the bot on one NATS: each message answered once, shared limits and spam
strikes, failover, channels spread out. See :mod:`kryten_llm.cluster.coordinator`; every bucket
is opened and written through :mod:`kryten_llm.cluster.kv`."""

from kryten_llm.cluster.claim import ClaimResult, Claims
from kryten_llm.cluster.coordinator import Coordinator, Mode, message_key
from kryten_llm.cluster.kvstore import SharedRateLimitStore
from kryten_llm.cluster.leases import ChannelLeases
from kryten_llm.cluster.registry import Registry, default_instance_id
from kryten_llm.cluster.seen import KVClaimStore
from kryten_llm.cluster.spamshare import SharedSpamStrikes

__all__ = [
    "ChannelLeases",
    "ClaimResult",
    "Claims",
    "Coordinator",
    "KVClaimStore",
    "Mode",
    "Registry",
    "SharedRateLimitStore",
    "SharedSpamStrikes",
    "default_instance_id",
    "message_key",
]
