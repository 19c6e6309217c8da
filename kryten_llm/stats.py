"""Process-wide counters and the operator's runtime switches.

Counters are plain integers keyed by a bounded vocabulary (event kinds, decision reasons,
provider names): never a user name or a message, so they can be exported as metrics without a
label that grows without bound.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class Flags:
    """Switches an operator may flip while the bot runs."""

    dry_run: bool = False
    paused: bool = False


@dataclass(slots=True)
class Stats:
    """Counters of what the service has seen and done."""

    counts: Counter[str] = field(default_factory=Counter)

    def inc(self, key: str, amount: int = 1) -> None:
        self.counts[key] += amount

    def __getitem__(self, key: str) -> int:
        return self.counts[key]

    def snapshot(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))
