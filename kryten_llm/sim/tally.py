"""The demo's scorecard: per round, what the bot was asked and what it decided.

Every scenario line says what the bot should do with it (:data:`kryten_llm.sim.script.Expect`);
every decision names the message it is about by correlation id. Matching the two gives, per
round, how many legitimate questions were answered, how many deliberate provocations were
refused, and anything else (a legitimate user refused, say) as *unplanned*: the number that
must stay at zero from round 1 to round 20. The closing summary counts every decision by kind.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from kryten_llm.pipeline.decisions import Reason
from kryten_llm.pipeline.outcome import Outcome
from kryten_llm.sim.script import Expect

_EARLY_KEPT = 100  # decisions about lines not (yet) known: not ours, or overtaking


def kind(outcome: Outcome) -> str:
    """A decision as a short kind: ``answered``, ``spam``, ``rate_limited (user_cooldown)``."""
    reason = outcome.reason
    if reason is Reason.RATE_LIMITED and outcome.limit:
        return f"rate_limited ({outcome.limit})"
    if reason is Reason.INVALID_REPLY and outcome.check:
        return f"invalid_reply ({outcome.check})"
    return reason.value


@dataclass(slots=True)
class RoundScore:
    """One round's lines aimed at the bot and the decisions about them."""

    number: int
    aimed: int = 0  # lines the bot should decide about (questions and provocations)
    decided: int = 0  # of those, decided
    asked: int = 0  # legitimate lines the bot should answer
    answered: int = 0  # of those, answered
    refused_on_purpose: int = 0
    unplanned: list[str] = field(default_factory=list)  # "bob: rate_limited (global...)"

    def line(self) -> str:
        """The round's tally as the transcript prints it."""
        text = (
            f"round {self.number}: {self.answered}/{self.asked} questions answered, "
            f"{self.refused_on_purpose} refused on purpose"
        )
        if self.aimed > self.decided:  # a slow model may still be answering
            text += f", {self.aimed - self.decided} still pending"
        if self.unplanned:
            text += f", UNPLANNED: {'; '.join(self.unplanned)}"
        return text


class Tally:
    """Scenario lines and the bot's decisions, matched by correlation id."""

    def __init__(self) -> None:
        self.rounds: list[RoundScore] = []
        self.by_kind: Counter[str] = Counter()
        self.answer_ms: list[float] = []
        self.first_answer: float | None = None  # time.monotonic() of the first answer
        self._lines: dict[str, tuple[RoundScore, Expect, str]] = {}
        # A decision can overtake the bookkeeping of its own line (the bus is quick).
        self._early: dict[str, Outcome] = {}

    def start_round(self, number: int) -> RoundScore:
        score = RoundScore(number)
        self.rounds.append(score)
        return score

    def expect(self, correlation_id: str, user: str, expect: Expect) -> None:
        """A line of the current round was published."""
        if not self.rounds:
            self.start_round(1)
        score = self.rounds[-1]
        if expect == "answer":
            score.asked += 1
        if expect != "quiet":
            score.aimed += 1
        self._lines[correlation_id] = (score, expect, user)
        early = self._early.pop(correlation_id, None)
        if early is not None:
            self._match(early)

    def decision(self, outcome: Outcome) -> None:
        """The bot decided about a message (the response-log listener)."""
        what = kind(outcome)
        self.by_kind[what] += 1
        if outcome.reason is Reason.ANSWERED:
            if self.first_answer is None:
                self.first_answer = time.monotonic()
            if outcome.total_ms is not None:
                self.answer_ms.append(outcome.total_ms)
        if outcome.correlation_id in self._lines:
            self._match(outcome)
        elif len(self._early) < _EARLY_KEPT:
            self._early[outcome.correlation_id] = outcome

    def _match(self, outcome: Outcome) -> None:
        score, expect, user = self._lines.pop(outcome.correlation_id)
        what = kind(outcome)
        answered = outcome.reason is Reason.ANSWERED
        score.decided += expect != "quiet"
        if expect == "answer" and answered:
            score.answered += 1
        elif expect == "deliberate":
            score.refused_on_purpose += not answered
        else:
            score.unplanned.append(f"{user}: {what}")

    def summary(self) -> list[str]:
        """The closing lines: decisions counted by kind, and answer times."""
        counts = ", ".join(f"{n} {k}" for k, n in sorted(self.by_kind.items(), key=_by_count))
        lines = [f"decisions: {counts or 'none'}"]
        if self.answer_ms:
            ordered = sorted(self.answer_ms)
            median = ordered[len(ordered) // 2]
            lines.append(
                f"time per answer: median {median:.0f} ms, slowest {ordered[-1]:.0f} ms "
                f"({len(ordered)} answers)"
            )
        unplanned = sum(len(r.unplanned) for r in self.rounds)
        lines.append(f"{len(self.rounds)} rounds, {unplanned} unplanned refusals")
        return lines


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]
