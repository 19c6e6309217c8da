"""Rate limits: how often the bot may speak, overall, per user and per trigger.

Sits after the triggers and the spam guard, in :mod:`kryten_llm.bot.admission` (inline in the
NATS callback while the hits are in memory, in the channel's lane when they are in JetStream KV):
``admit()`` checks every limit and, when all pass, records the reply (under a lock, so
concurrent callers cannot both take the last slot; a hit sent over the network is recorded
while the reply is prepared, and ``acquire()`` waits for that too). A refusal is a value, not an
error: it names the limit and the exact number of seconds until that limit would let the same
reply through.

Limits, checked in this order (the first that refuses is reported):
``global_cooldown``, ``global_per_minute``, ``global_per_hour``, ``user_cooldown``,
``user_per_hour``, ``mention_cooldown`` (mentions only), ``unsolicited`` (all trigger words
together), ``trigger_cooldown`` and ``trigger_per_hour`` (trigger words only, from that word's
config).

A reply to nobody (a comment on a new video, ``username=""``) is held to the bot-wide limits
only.

Rank multipliers loosen the *per-user* limits only (counts multiplied, cooldowns scaled); the
bot-wide and per-trigger limits protect the channel and apply to everyone.

Hits live in a :class:`RateLimitStore`: per-key deques in memory, or JetStream KV
(:mod:`kryten_llm.cluster.kvstore`) so that several instances obey the limits one would. A
decision is made on a :meth:`~RateLimitStore.snapshot`; :meth:`~RateLimitStore.commit` records
the hit unless another instance changed those keys meanwhile (then it is made again).
"""

from __future__ import annotations

import asyncio
import bisect
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

import structlog

from kryten_llm.errors import ClusterError
from kryten_llm.pipeline.decisions import ALLOWED, RateDecision, TriggerMatch

if TYPE_CHECKING:
    from kryten_llm.config import (
        RankMultiplierConfig,
        RateLimitConfig,
        TriggersConfig,
        TriggerWordConfig,
    )

log = structlog.get_logger(__name__)

HOUR = 3600.0
MINUTE = 60.0
_COMMIT_ATTEMPTS = 30  # every reply writes the global key, so instances do race for it
_BACKOFF = 0.002
# The message went to another instance (or could not be claimed): nothing was recorded.
NOT_CLAIMED = RateDecision(False, "not_claimed", 0.0)
_UNAVAILABLE = RateDecision(False, "shared_limits_unavailable", 1.0)


class Hits(Protocol):
    """Hit timestamps by key ("g", "u:alice", "m:alice", "t:popcorn"), to decide on."""

    async def count_since(self, key: str, since: float) -> int:
        """How many hits of ``key`` are strictly after ``since``.

        Strictly: a hit ``period`` seconds old no longer counts, so a limit frees exactly at
        the ``retry_after`` it reported.
        """
        ...

    async def latest(self, key: str, n: int = 1) -> float | None:
        """The time of the ``n``-th most recent hit of ``key`` (1 = the last), if any."""
        ...


class RateLimitStore(Hits, Protocol):
    """Where hit timestamps live. ``remote``: in a store over the network, a hit is recorded
    while the reply is prepared (see :meth:`RateLimiter.admit`)."""

    remote: bool

    async def record(self, keys: Sequence[str], now: float) -> None:
        """Add one hit at ``now`` to each key."""
        ...

    async def clear(self) -> None:
        """Forget every hit."""
        ...

    async def withdraw(self, keys: Sequence[str], now: float) -> None:
        """Take back the hit recorded at ``now`` on ``keys`` (its message went elsewhere)."""
        ...

    async def snapshot(self, keys: Sequence[str]) -> Hits:
        """The hits of ``keys`` to decide on (an in-process store is its own snapshot)."""
        ...

    async def commit(self, snapshot: Hits, keys: Sequence[str], now: float) -> bool:
        """Record one hit at ``now`` on ``keys`` unless they changed since ``snapshot``.

        Returns:
            False when another writer came first: take a new snapshot and decide again.
        """
        ...


class InMemoryRateLimitStore:
    """Per-key deques of timestamps in time order; idle keys are swept, amortised O(1)."""

    remote = False

    def __init__(self, horizon: float = HOUR, sweep_above: int = 10_000) -> None:
        self._hits: dict[str, deque[float]] = {}
        self._horizon = horizon
        self._sweep_above = sweep_above
        self._next_sweep = sweep_above

    def __len__(self) -> int:
        return len(self._hits)

    async def count_since(self, key: str, since: float) -> int:
        hits = self._hits.get(key)
        if not hits:
            return 0
        return len(hits) - bisect.bisect_right(hits, since)

    async def latest(self, key: str, n: int = 1) -> float | None:
        hits = self._hits.get(key)
        if not hits or n > len(hits):
            return None
        return hits[-n]

    async def record(self, keys: Sequence[str], now: float) -> None:
        for key in keys:
            hits = self._hits.get(key)
            if hits is None:
                hits = self._hits[key] = deque()
            hits.append(now)
            while hits[0] < now - self._horizon:
                hits.popleft()
        if len(self._hits) > self._next_sweep:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        stale = [k for k, hits in self._hits.items() if hits[-1] < now - self._horizon]
        for key in stale:
            del self._hits[key]
        # Sweep again only once the map has doubled: each sweep is paid for by new keys.
        self._next_sweep = max(self._sweep_above, 2 * len(self._hits))

    async def clear(self) -> None:
        self._hits.clear()

    async def withdraw(self, keys: Sequence[str], now: float) -> None:
        for key in keys:
            hits = self._hits.get(key)
            if hits is not None and now in hits:
                hits.remove(now)

    async def snapshot(self, keys: Sequence[str]) -> Hits:
        return self  # the limiter's lock already keeps other callers out

    async def commit(self, snapshot: Hits, keys: Sequence[str], now: float) -> bool:
        await self.record(keys, now)
        return True


@dataclass(frozen=True, slots=True)
class _Rule:
    """``count`` hits allowed per ``period``; ``count=None`` makes it a cooldown."""

    name: str
    key: str
    count: int | None
    period: float


class RateLimiter:
    """Checks and records replies against every configured limit."""

    def __init__(
        self,
        config: RateLimitConfig,
        triggers: TriggersConfig,
        *,
        store: RateLimitStore | None = None,
        scope: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._scope = scope  # prefixes every key: limiters sharing one store count apart
        self.reconfigure(config, triggers.words)
        self._store: RateLimitStore = store or InMemoryRateLimitStore()
        self._clock = clock
        self._lock = asyncio.Lock()

    def reconfigure(self, config: RateLimitConfig, words: Iterable[TriggerWordConfig]) -> None:
        """Apply new limits from the next check on; every hit recorded so far still counts.

        Args:
            config: the limits.
            words: every trigger word whose cooldown and hourly cap this limiter enforces
                (channels sharing a limiter may have word sets of their own).
        """
        self._config = config
        self._words = {word.name: word for word in words}
        self._multipliers = sorted(config.rank_multipliers, key=lambda m: m.min_rank)

    def _multiplier(self, rank: float) -> RankMultiplierConfig | None:
        chosen = None
        for multiplier in self._multipliers:
            if multiplier.min_rank <= rank:
                chosen = multiplier
        return chosen

    def _rules(self, username: str, rank: float, trigger: TriggerMatch) -> list[_Rule]:
        cfg = self._config
        user = username.lower()
        m = self._multiplier(rank)
        scale = m.cooldown_multiplier if m else 1.0
        factor = m.limit_multiplier if m else 1.0
        rules = [
            _Rule("global_cooldown", "g", None, cfg.global_cooldown_seconds),
            _Rule("global_per_minute", "g", cfg.global_per_minute, MINUTE),
            _Rule("global_per_hour", "g", cfg.global_per_hour, HOUR),
        ]
        if not user:  # a video comment answers nobody: only the bot-wide limits apply
            return self._scoped(rules)
        rules += [
            _Rule("user_cooldown", f"u:{user}", None, cfg.user_cooldown_seconds * scale),
            _Rule(
                "user_per_hour", f"u:{user}", max(1, math.floor(cfg.user_per_hour * factor)), HOUR
            ),
        ]
        if trigger.kind == "mention":
            rules.append(
                _Rule("mention_cooldown", f"m:{user}", None, cfg.mention_cooldown_seconds * scale)
            )
        word = self._words.get(trigger.name) if trigger.kind == "word" else None
        if trigger.kind == "word":
            # Nobody asked: keep the bot from talking over the channel on its own.
            rules.append(
                _Rule(
                    "unsolicited", "w", cfg.unsolicited_per_window, cfg.unsolicited_window_seconds
                )
            )
        if word is not None:
            rules.append(_Rule("trigger_cooldown", f"t:{word.name}", None, word.cooldown_seconds))
            if word.max_per_hour is not None:
                rules.append(_Rule("trigger_per_hour", f"t:{word.name}", word.max_per_hour, HOUR))
        return self._scoped(rules)

    def _scoped(self, rules: list[_Rule]) -> list[_Rule]:
        if not self._scope:
            return rules
        return [replace(rule, key=self._scope + rule.key) for rule in rules]

    async def _evaluate(
        self, rules: list[_Rule], now: float, store: Hits | None = None
    ) -> RateDecision:
        store = store or self._store
        for rule in rules:
            if rule.count is None:  # a cooldown
                if rule.period <= 0:
                    continue
                last = await store.latest(rule.key)
                if last is not None and last > now - rule.period:
                    return RateDecision(False, rule.name, last + rule.period - now)
                continue
            if rule.count == 0:
                return RateDecision(False, rule.name, rule.period)
            if await store.count_since(rule.key, now - rule.period) >= rule.count:
                # Free again when the hit that makes the window full drops out of it.
                needed = await store.latest(rule.key, rule.count)
                assert needed is not None
                return RateDecision(False, rule.name, needed + rule.period - now)
        return ALLOWED

    async def check(self, *, username: str, rank: float, trigger: TriggerMatch) -> RateDecision:
        """Whether a reply to ``username`` for ``trigger`` may go out now (records nothing)."""
        return await self._evaluate(self._rules(username, rank, trigger), self._clock())

    async def record(self, *, username: str, trigger: TriggerMatch) -> None:
        """Count one reply against every limit it is subject to."""
        rules = self._rules(username, 0, trigger)
        await self._store.record(sorted({rule.key for rule in rules}), self._clock())

    async def acquire(
        self,
        *,
        username: str,
        rank: float,
        trigger: TriggerMatch,
    ) -> RateDecision:
        """:meth:`admit` without a claim, waiting until the hit is recorded: check and, when
        allowed, record, atomically with respect to other callers."""
        decision, recording = await self.admit(username=username, rank=rank, trigger=trigger)
        return await recording if recording is not None else decision

    async def admit(
        self,
        *,
        username: str,
        rank: float,
        trigger: TriggerMatch,
        claim: Callable[[], Awaitable[bool]] | None = None,
        optimistic: bool = False,
    ) -> tuple[RateDecision, asyncio.Task[RateDecision] | None]:
        """Like :meth:`acquire`, but a hit allowed by a store over the network is recorded in
        the background: the reply can be prepared meanwhile.

        Args:
            claim: makes the claim of the message (whether this instance answers it), before
                the limiter is locked; a hit is recorded only if it comes out true (else
                :data:`NOT_CLAIMED`).
            optimistic: with ``claim``, decide without waiting for it and send the hit along
                with it (one round trip, not two); an allowed decision returns before the
                claim is answered (``claim`` should then return a future the caller can
                watch too), and the hit is taken back if the claim is lost. Worth it when no
                other instance is expected to claim.

        Returns:
            The decision, and while the hit is being recorded, the task that gives the final
            decision: the same, :data:`NOT_CLAIMED` (an optimistic claim lost), or (another
            instance recorded first and deciding again on fresh windows refused) a refusal.
            Nothing may be said before it is known. The limiter stays locked until then, so
            the next decision sees this hit.
        """
        if claim is not None and not optimistic:
            # Claimed before the lock: a message answered elsewhere never waits for it, and
            # the claims of every channel race the peers' at once.
            if not await claim():
                return NOT_CLAIMED, None
            claim = None
        await self._lock.acquire()
        recording: asyncio.Task[RateDecision] | None = None
        try:
            rules = self._rules(username, rank, trigger)
            keys = sorted({rule.key for rule in rules})
            try:
                view = await self._store.snapshot(keys)
                now = self._clock()
                decision = await self._evaluate(rules, now, view)
                if not decision.allowed or not self._store.remote:  # nothing to wait for
                    if claim is not None and not await claim():
                        return NOT_CLAIMED, None
                    if decision.allowed:
                        await self._store.record(keys, now)
                    return decision, None
            except ClusterError:  # the shared store stayed unreachable: refuse, safely
                return _UNAVAILABLE, None
            # Optimistic: the claim and the hit's writes are sent together (one write to the
            # socket) and neither is waited for here: the reply is prepared meanwhile, and
            # the recording takes the hit back if the claim is lost.
            won = asyncio.ensure_future(claim()) if claim is not None else None
            recording = asyncio.create_task(
                self._record(rules, keys, view, now, decision, claim=won)
            )
            return decision, recording
        finally:
            if recording is None:
                self._lock.release()  # else the recording task releases it

    async def _record(
        self,
        rules: list[_Rule],
        keys: list[str],
        view: Hits,
        now: float,
        decision: RateDecision,
        *,
        claim: Awaitable[bool] | None = None,
    ) -> RateDecision:
        """Commit the hit decided on ``view``; on a conflict, decide again on fresh windows.

        With ``claim`` (still in flight when the hit was sent), a lost claim takes it back.
        """
        try:
            committed = await self._store.commit(view, keys, now)
            if claim is not None and not await _won(claim):
                if committed:
                    await self._store.withdraw(keys, now)
                return NOT_CLAIMED
            if committed:
                return decision
            for attempt in range(1, _COMMIT_ATTEMPTS):
                # another instance committed first: back off a random moment
                await asyncio.sleep(random.uniform(0, _BACKOFF * attempt))
                view = await self._store.snapshot(keys)
                now = self._clock()
                decision = await self._evaluate(rules, now, view)
                if not decision.allowed or await self._store.commit(view, keys, now):
                    return decision
            # Other instances kept winning the race for the same keys: refuse, safely.
            return RateDecision(False, "shared_limits_busy", 1.0)
        except ClusterError:
            return _UNAVAILABLE
        except Exception as exc:  # JetStream failed in a way the store did not name
            log.warning("rate_limit_record_failed", error=str(exc) or repr(exc))
            return _UNAVAILABLE
        finally:
            self._lock.release()

    async def clear(self) -> None:
        """Forget every hit: all cooldowns and windows start afresh."""
        await self._store.clear()


async def _won(claim: Awaitable[bool]) -> bool:
    """Whether the claim was won; one that failed in a way it did not name counts as lost."""
    try:
        return await claim
    except Exception as exc:
        log.warning("claim_failed", error=str(exc) or repr(exc))
        return False
