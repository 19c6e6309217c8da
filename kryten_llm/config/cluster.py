"""Several instances of the bot on one NATS: the ``cluster`` and ``sharding`` sections.

Instances share one config file and differ only by working directory (and, optionally,
``cluster.instance_id``): with JetStream on the server they cooperate with nothing else set.
Read by :mod:`kryten_llm.cluster`.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from kryten_llm.config.base import Section

FAILOVER_LIMIT_SECONDS = 10.0  # the interface promises failover within this


class ClusterConfig(Section):
    """How instances of one service find each other and share the work."""

    enabled: bool = Field(
        True,
        description="Cooperate with other instances of this service through JetStream KV when "
        "the server has JetStream (each message answered once, shared limits); without "
        "JetStream the bot runs alone and says so at startup.",
    )
    instance_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="This instance's name among its peers; default: the host name and a short "
        "hash of the working directory (stable across restarts).",
    )
    shared_limits: bool = Field(
        True, description="Keep rate-limit windows and cooldowns in JetStream KV."
    )
    heartbeat_seconds: float = Field(
        2.0, gt=0, le=10, description="How often an instance refreshes its registry entry."
    )
    peer_ttl_seconds: float = Field(
        6.0, gt=0, le=FAILOVER_LIMIT_SECONDS, description="A peer silent this long is gone."
    )
    claim_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=30,
        description="How long to keep trying to claim a message (or read the shared limits) "
        "while JetStream is unreachable, as when a node of a NATS cluster is lost and its "
        "streams elect new leaders; when it runs out the message is not answered (never twice).",
    )
    claim_ttl_seconds: float = Field(
        600.0, ge=60, le=86400, description="How long a claimed message is remembered."
    )
    replicas: int | None = Field(
        None,
        ge=1,
        le=5,
        description="Copies of each KV bucket; default: 3 when the server is in a cluster of "
        "three or more nodes, else 1.",
    )

    @model_validator(mode="after")
    def _ttl_outlives_heartbeats(self) -> ClusterConfig:
        if self.peer_ttl_seconds < 2 * self.heartbeat_seconds:
            raise ValueError(
                f"peer_ttl_seconds ({self.peer_ttl_seconds}) must be at least twice "
                f"heartbeat_seconds ({self.heartbeat_seconds}): raise cluster.peer_ttl_seconds "
                "or lower cluster.heartbeat_seconds"
            )
        return self


class ShardingConfig(Section):
    """Spread the channels over the instances instead of all answering in every channel."""

    enabled: bool = Field(
        False,
        description="Each instance answers only in the channels it holds a lease on; leases of "
        "a dead instance expire and move to the others.",
    )
    lease_seconds: float = Field(
        6.0,
        ge=1,
        # Expiry plus one look (a third of it) stays within the failover limit.
        le=FAILOVER_LIMIT_SECONDS * 0.75,
        description="A lease not renewed this long expires (renewed every third of it).",
    )
