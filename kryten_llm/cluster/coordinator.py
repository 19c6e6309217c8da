"""One instance's part in a cluster of bots: built from the settings, asked once per message.

The service starts a :class:`Coordinator` right after connecting to NATS. With JetStream on the
server it opens the service's buckets (``kryten_<service>_claims``, ``_ratelimits``, ``_instances``
and, with sharding, ``_leases``), keeps this instance in the registry, and renews channel
leases; without JetStream it logs ``cluster_standalone`` and the bot runs alone as before.

The admission (:mod:`kryten_llm.bot.admission`, in the channel's lane) asks
:meth:`Coordinator.decide` for each message it would answer: ``None`` means this instance
answers it; a :class:`~kryten_llm.pipeline.decisions.Reason` says why not (another instance
answers, or the claim could not be made). The rate limiters keep their hits in
:attr:`shared_limits`; :attr:`alone` says whether the hit may travel with the claim. At
each heartbeat an instance alone in the registry pauses the watch of the limits bucket (it
would only echo its own writes) and one with peers follows it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import structlog

from kryten_llm.cluster.claim import ClaimResult, Claims
from kryten_llm.cluster.kv import bucket_name, open_bucket, replicas_for, retrying
from kryten_llm.cluster.kvstore import SharedRateLimitStore
from kryten_llm.cluster.leases import ChannelLeases
from kryten_llm.cluster.registry import Registry, default_instance_id
from kryten_llm.errors import ClusterError
from kryten_llm.pipeline.decisions import Reason

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

    from kryten_llm.bus.events import ChatEvent
    from kryten_llm.config import ChannelConfig, Settings

log = structlog.get_logger(__name__)

_LIMITS_TTL = 3700.0  # an hour of hits, the longest window, and a little more


class Mode(StrEnum):
    DISABLED = "disabled"  # cluster.enabled is false
    STANDALONE = "standalone"  # no JetStream: this instance alone
    CLUSTERED = "clustered"


class Coordinator:
    """Claims, shared limits, registry and leases of one instance.

    Args:
        settings: the whole configuration (``cluster``, ``sharding``, ``service.name`` and
            ``channels`` are read).
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._config = settings.cluster
        self.instance_id = self._config.instance_id or default_instance_id()
        self.mode = Mode.DISABLED
        self.claims: Claims | None = None
        self.shared_limits: SharedRateLimitStore | None = None
        self.registry: Registry | None = None
        self.leases: ChannelLeases | None = None
        self._task: asyncio.Task[None] | None = None
        self.replicas = 1

    async def start(self, nc: NATS) -> None:
        """Join the cluster, or say why this instance runs alone. Never raises."""
        config = self._config
        if not config.enabled:
            log.info("cluster_disabled", instance_id=self.instance_id)
            return
        try:
            await self._open(nc)
        except ClusterError as exc:
            self.mode = Mode.STANDALONE
            log.warning(
                "cluster_standalone",
                instance_id=self.instance_id,
                reason=str(exc),
                detail="no JetStream: this instance runs alone; a second instance on this NATS "
                "would answer every message again",
                fix="enable JetStream on the NATS server (nats-server -js) to run several "
                "instances, or set cluster.enabled to false to silence this",
            )
            return
        self.mode = Mode.CLUSTERED
        try:  # peers and leases known before the first message (a new R3 bucket may need
            # a moment before its stream answers)
            await retrying(self._tick, self._config.claim_timeout_seconds, what="first beat")
        except ClusterError as exc:
            log.warning("cluster_beat_failed", error=str(exc))  # the heartbeat loop tries again
        self._task = asyncio.create_task(self._loop(), name="cluster-heartbeat")
        log.info(
            "cluster_joined",
            instance_id=self.instance_id,
            peers=list(self.registry.peers) if self.registry else [],
            replicas=self.replicas,
            sharding=self.leases is not None,
            shared_limits=self.shared_limits is not None,
        )

    async def _open(self, nc: NATS) -> None:
        config, service = self._config, self._settings.service.name
        self.replicas = replicas = replicas_for(nc, config.replicas)

        async def bucket(purpose: str, ttl: float) -> Any:
            return await open_bucket(nc, bucket_name(service, purpose), ttl=ttl, replicas=replicas)

        self.claims = Claims(
            await bucket("claims", config.claim_ttl_seconds),
            self.instance_id,
            config.claim_timeout_seconds,
        )
        if config.shared_limits:
            self.shared_limits = SharedRateLimitStore(
                await bucket("ratelimits", _LIMITS_TTL), timeout=config.claim_timeout_seconds
            )
            await self.shared_limits.start()
        instances = await bucket("instances", config.peer_ttl_seconds)
        self.registry = Registry(instances, self.instance_id)
        sharding = self._settings.sharding
        if sharding.enabled:
            self.leases = ChannelLeases(
                await bucket("leases", sharding.lease_seconds),
                self.instance_id,
                [c.key for c in self._settings.channels],
                sharding.lease_seconds,
            )

    @property
    def _interval(self) -> float:
        every = self._config.heartbeat_seconds
        if self.leases is not None:
            every = min(every, self._settings.sharding.lease_seconds / 3)
        return every

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._tick()
            except Exception as exc:  # NATS reconnecting, a node failing over: next beat
                log.warning("cluster_beat_failed", error=str(exc) or type(exc).__name__)

    async def _tick(self) -> None:
        if self.registry is None:
            return
        held = self.leases.held if self.leases is not None else None
        peers = await self.registry.beat({"channels": held} if held is not None else {})
        if self.leases is not None:
            await self.leases.tick(len(peers))
        if self.shared_limits is not None:  # alone: no watch echoing this instance's writes
            await self.shared_limits.share(len(peers) > 1)

    def serves(self, channel: ChannelConfig) -> bool:
        """Whether this instance answers in ``channel`` at all (sharded: holds its lease)."""
        return self.leases is None or self.leases.holds(channel.key)

    async def decide(self, channel: ChannelConfig, chat: ChatEvent) -> Reason | None:
        """``None`` when this instance answers ``chat``; otherwise why it does not."""
        if self.claims is None:
            return None
        if not self.serves(channel):
            return Reason.ANSWERED_ELSEWHERE
        result = await self.claims.claim(message_key(channel, chat))
        if result is ClaimResult.WON:
            return None
        return Reason.ANSWERED_ELSEWHERE if result is ClaimResult.LOST else Reason.CLAIM_FAILED

    @property
    def alone(self) -> bool:
        """No other live instance in the registry: nobody else is expected to claim."""
        return self.registry is None or len(self.registry.peers) <= 1

    def snapshot(self) -> dict[str, Any]:
        """For ``/health`` and the lifecycle metadata."""
        peers = self.registry.peers if self.registry is not None else (self.instance_id,)
        result: dict[str, Any] = {
            "instance_id": self.instance_id,
            "mode": self.mode.value,
            "peers": len(peers),
            "instances": list(peers),
        }
        if self.leases is not None:
            result["channels_held"] = self.leases.held
        if self.claims is not None:
            result["claims_failed"] = self.claims.failures
        return result

    async def stop(self) -> None:
        """Leave: stop beating, give back leases, remove the registry entry. Bounded, idempotent."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)  # a cancel of ours propagates
            self._task = None
        if self.shared_limits is not None:
            await self.shared_limits.stop()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                if self.leases is not None:
                    await self.leases.release_all()
                if self.registry is not None:
                    await self.registry.leave()


def message_key(channel: ChannelConfig, chat: ChatEvent) -> str:
    """The claim key of a message: its correlation id, or (when the bridge sent none) a hash of
    what makes it unique, so that every instance computes the same key."""
    envelope = chat.envelope
    if envelope.correlation_id:
        return envelope.correlation_id
    seed = f"{channel.key}\n{chat.username}\n{chat.time_ms}\n{chat.is_pm}\n{chat.text}"
    return hashlib.sha256(seed.encode("utf-8", "surrogatepass")).hexdigest()
