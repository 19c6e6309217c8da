"""Joining in: whether the bot speaks unasked on a chat line nobody aimed at it.

The chance is ``base_probability`` times a factor that decays with the time since the bot last
spoke or was addressed in the channel (a piecewise-linear curve, e.g. 0.9 at 60 s, 0.7 at
120 s, 0.5 at 300 s: a bot in a conversation stays in it, one that has been quiet stays quiet),
raised for a question to the room, and capped: at most ``max_per_window`` joins per window, and
never when the reply would take the bot over its share budget (that check is the caller's, in
:mod:`kryten_llm.pipeline.share`). Other bots never get here: the intake filter drops them.

Runs in the NATS callback on chat lines that fired no trigger: arithmetic and one regex.
"""

from __future__ import annotations

import bisect
import random
import re
from collections import deque
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kryten_llm.config import DecayPoint, ParticipationConfig

# "bob: ..." or "@bob ..." at the start: the line is for bob, not for the room.
_ADDRESSEE = re.compile(r"^\s*@?([\w-]{1,20})\s*[:,]")
_AT_NAME = re.compile(r"@([\w-]{1,20})")


def decay_factor(curve: Sequence[DecayPoint], seconds: float) -> float:
    """The curve's factor ``seconds`` after the bot last spoke or was addressed.

    Linear between points, the first point's factor before it, the last one's after it.
    """
    times = [point.after_seconds for point in curve]
    i = bisect.bisect_right(times, seconds)
    if i == 0:
        return curve[0].factor
    if i == len(curve):
        return curve[-1].factor
    left, right = curve[i - 1], curve[i]
    span = right.after_seconds - left.after_seconds
    return left.factor + (right.factor - left.factor) * (seconds - left.after_seconds) / span


def is_room_question(text: str, present: Collection[str]) -> bool:
    """A question to everyone: it asks something and names nobody present as its addressee."""
    if "?" not in text:
        return False
    lowered = {name.lower() for name in present}
    first = _ADDRESSEE.match(text)
    if first is not None and first.group(1).lower() in lowered:
        return False
    return not any(name.lower() in lowered for name in _AT_NAME.findall(text))


class Participation:
    """Rolls the dice for joining in, and keeps the per-window cap of one channel.

    Args:
        rng: the randomness (seed it for reproducible runs).
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._joins: deque[float] = deque()

    def chance(
        self,
        config: ParticipationConfig,
        *,
        since_engaged: float,
        text: str,
        present: Collection[str],
    ) -> float:
        """The chance to join in on ``text`` (0..1)."""
        chance = config.base_probability * decay_factor(config.decay, since_engaged)
        if is_room_question(text, present):
            chance *= config.question_factor
        return min(chance, 1.0)

    def capped(self, config: ParticipationConfig, now: float) -> bool:
        """Whether the window's joins are used up."""
        joins = self._joins
        while joins and joins[0] <= now - config.window_seconds:
            joins.popleft()
        return len(joins) >= config.max_per_window

    def roll(self, chance: float) -> bool:
        """One draw; a chance of 0 draws nothing (the sequence of draws stays reproducible)."""
        return chance > 0 and self._rng.random() < chance

    def joined(self, now: float) -> None:
        """Count one join against the window."""
        self._joins.append(now)
