"""The spam guard: users who flood the bot are ignored for a while, longer each time.

Runs in the NATS callback after the intake filters, on every message *aimed at the bot*
(mentions and PMs, whether or not they would be answered), before the rate limiter. Offences:

- **flood**: more than ``max_messages`` aimed at the bot within ``window_seconds``;
- **identical**: the same text (normalised) ``max_identical`` times within its window;
- **mention flood**: one message naming more than ``max_mentioned_users`` users present.

Each offence adds a strike; the penalty is ``base * 2**(strikes-1)`` seconds, capped at
``max_penalty_seconds``. A clean spell of ``forgive_after_seconds`` resets the strikes. Users
of ``exempt_min_rank`` or higher (moderators by default) are never penalised. State is per user,
and users idle for longer than every window are dropped, so memory stays bounded.

A user's standing (strikes, last offence, penalty) can be shared with other instances: each new
offence is handed to :attr:`SpamGuard.on_strike` as a :class:`Standing`, and standings from
elsewhere come in through :meth:`SpamGuard.adopt`, combined by :func:`merged`. The guard itself
stays in memory and never waits (see :mod:`kryten_llm.cluster.spamshare` for the KV side).
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kryten_llm.config import SpamConfig

_WORD = re.compile(r"[\w-]+")
_CLEANUP_EVERY = 1024


@dataclass(frozen=True, slots=True)
class SpamVerdict:
    """``allowed`` false means ignore the message; ``offence`` is set when it was a new one."""

    allowed: bool
    offence: str = ""
    retry_after: float = 0.0
    strikes: int = 0


ALLOW = SpamVerdict(True)

# Two instances judging the same message stamp its offence this close together (or closer);
# two real offences are at least a penalty apart (no offence counts while one is served).
SAME_OFFENCE_SECONDS = 2.0
_CLOCK_SLACK = 0.01  # stored times are rounded to the millisecond


@dataclass(frozen=True, slots=True)
class Standing:
    """What the guard holds against one user: ``strikes`` so far, the last offence at
    ``last_offence``, ignored until ``penalty_until`` (times in one clock, said by the holder)."""

    username: str  # lower-cased
    strikes: int
    last_offence: float
    penalty_until: float

    def shifted(self, by: float) -> Standing:
        """The same standing with its times moved by ``by`` seconds (one clock to another)."""
        return replace(
            self, last_offence=self.last_offence + by, penalty_until=self.penalty_until + by
        )


def _same(a: Standing, b: Standing) -> bool:
    """Equal but for the rounding of a stored time and the clocks' offsets."""
    return (
        a.strikes == b.strikes
        and abs(a.last_offence - b.last_offence) < _CLOCK_SLACK
        and abs(a.penalty_until - b.penalty_until) < _CLOCK_SLACK
    )


def merged(ours: Standing | None, theirs: Standing) -> Standing:
    """The standing that holds when two copies meet; commutative and idempotent.

    The later offence wins (whoever stamped it had seen the earlier ones); two stamps of one
    offence (instances that judged the same message) keep the harsher of each value.
    """
    if ours is None or ours.strikes == 0:
        return theirs
    if theirs.strikes == 0:
        return ours
    if abs(ours.last_offence - theirs.last_offence) <= SAME_OFFENCE_SECONDS:
        return Standing(
            ours.username,
            max(ours.strikes, theirs.strikes),
            max(ours.last_offence, theirs.last_offence),
            max(ours.penalty_until, theirs.penalty_until),
        )
    return ours if ours.last_offence > theirs.last_offence else theirs


@dataclass(slots=True)
class _User:
    times: deque[float] = field(default_factory=deque)
    texts: deque[tuple[float, str]] = field(default_factory=deque)
    strikes: int = 0
    penalty_until: float = 0.0
    last_offence: float = 0.0
    last_seen: float = 0.0


class SpamGuard:
    """Tracks per-user behaviour towards the bot and hands out growing penalties."""

    def __init__(self, config: SpamConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._users: dict[str, _User] = {}
        self._calls = 0
        self.reconfigure(config)
        # Told of every new offence (the shared store queues it for other instances); must
        # not block: it is called in the NATS callback.
        self.on_strike: Callable[[Standing], None] | None = None
        self.adopted = 0  # standings from elsewhere that changed what we hold

    def reconfigure(self, config: SpamConfig) -> None:
        """Judge by ``config`` from the next message on; strikes and penalties are kept."""
        self._config = config
        self._idle_after = max(
            config.window_seconds,
            config.identical_window_seconds,
            config.max_penalty_seconds,
            config.forgive_after_seconds,
        )

    @property
    def config(self) -> SpamConfig:
        """The settings the guard judges by."""
        return self._config

    def __len__(self) -> int:
        return len(self._users)

    def check(
        self, username: str, text: str, *, rank: float, present: Collection[str] = ()
    ) -> SpamVerdict:
        """Record one message aimed at the bot and judge its sender.

        Args:
            username: the sender.
            text: the message as plain text.
            rank: the sender's rank (exempt at ``exempt_min_rank`` and above).
            present: lower-cased names of users in the channel, for mention floods.
        """
        cfg = self._config
        if not cfg.enabled or rank >= cfg.exempt_min_rank:
            return ALLOW
        now = self._clock()
        self._calls += 1
        if self._calls % _CLEANUP_EVERY == 0:
            self._cleanup(now)
        key = username.lower()
        user = self._users.get(key)
        if user is None:
            user = self._users[key] = _User()
        user.last_seen = now
        if user.strikes and now - user.last_offence >= cfg.forgive_after_seconds:
            user.strikes = 0
        offence = self._offence(user, text, now, present)
        if user.penalty_until > now:
            # Already serving a penalty: ignored, but one flood is one strike, not one per line.
            return SpamVerdict(False, "", user.penalty_until - now, user.strikes)
        if offence:
            user.strikes += 1
            user.last_offence = now
            penalty = cfg.base_penalty_seconds * 2 ** (user.strikes - 1)
            user.penalty_until = now + min(penalty, cfg.max_penalty_seconds)
            if self.on_strike is not None:
                self.on_strike(self._standing(key, user))
            return SpamVerdict(False, offence, user.penalty_until - now, user.strikes)
        return ALLOW

    def adopt(self, standing: Standing) -> bool:
        """Take in a standing held elsewhere (another instance, this guard's clock).

        Returns:
            True when it changed what this guard holds against the user.
        """
        now = self._clock()
        forgiven = now - standing.last_offence >= self._config.forgive_after_seconds
        if standing.strikes <= 0 or (standing.penalty_until <= now and forgiven):
            return False  # nothing left to hold against them
        key = standing.username.lower()
        user = self._users.get(key)
        ours = self._standing(key, user) if user is not None else None
        result = merged(ours, replace(standing, username=key))
        if ours is not None and _same(result, ours):
            return False  # what we hold already (our own offence coming back, say)
        if user is None:
            user = self._users[key] = _User()
        user.strikes = result.strikes
        user.last_offence = result.last_offence
        user.penalty_until = result.penalty_until
        user.last_seen = max(user.last_seen, now)
        self.adopted += 1
        return True

    @staticmethod
    def _standing(key: str, user: _User) -> Standing:
        return Standing(key, user.strikes, user.last_offence, user.penalty_until)

    def _offence(self, user: _User, text: str, now: float, present: Collection[str]) -> str:
        cfg = self._config
        times = user.times
        times.append(now)
        while times and times[0] <= now - cfg.window_seconds:
            times.popleft()
        norm = " ".join(_WORD.findall(unicodedata.normalize("NFKC", text).casefold()))
        texts = user.texts
        while texts and texts[0][0] <= now - cfg.identical_window_seconds:
            texts.popleft()
        texts.append((now, norm))
        if len(texts) > cfg.max_identical * 4:
            texts.popleft()
        if len(times) > cfg.max_messages:
            return "flood"
        if norm and sum(1 for _, t in texts if t == norm) >= cfg.max_identical:
            return "identical"
        if present and len(present) > cfg.max_mentioned_users:
            named = {w.lstrip("@") for w in norm.split()} & set(present)
            if len(named) > cfg.max_mentioned_users:
                return "mention_flood"
        return ""

    def clear(self, before: float | None = None) -> None:
        """Forget every user (the operator's "clear cooldowns"); with ``before`` (this guard's
        clock), forgive only offences and forget only messages no later than it, so a clear
        heard again (a KV watch replaying it) never undoes what happened since."""
        if before is None:
            self._users.clear()
            return
        for user in self._users.values():
            if user.strikes and user.last_offence <= before:
                user.strikes, user.last_offence, user.penalty_until = 0, 0.0, 0.0
            while user.times and user.times[0] <= before:
                user.times.popleft()
            while user.texts and user.texts[0][0] <= before:
                user.texts.popleft()

    def _cleanup(self, now: float) -> None:
        idle = [k for k, u in self._users.items() if now - u.last_seen > self._idle_after]
        for key in idle:
            del self._users[key]
