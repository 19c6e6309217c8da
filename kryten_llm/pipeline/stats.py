"""Process-wide counters and the operator's runtime switches.

Counters are keyed by enums and other bounded vocabularies (event kinds, decision reasons,
trigger kinds): never a user name or a message, so they can be exported as metrics without a
label that grows without bound. Telemetry reads the typed counters directly; :meth:`snapshot`
flattens them into the names heartbeats and ``/api/state`` have always shown
(``decision_answered``, ``event_type:chat`` ...).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum

from kryten_llm.pipeline.decisions import Reason


@dataclass(slots=True)
class Flags:
    """Switches an operator may flip while the bot runs."""

    dry_run: bool = False
    paused: bool = False


class Count(StrEnum):
    """Plain counters of the live bot. Values are the names shown in heartbeats."""

    EVENTS = "events"
    EVENTS_MALFORMED = "events_malformed"
    EVENTS_FAILED = "events_failed"
    EVENTS_FOREIGN_DOMAIN = "events_foreign_domain"
    CHAT = "chat"
    TRIGGERED = "triggered"
    WORKER_ERRORS = "worker_errors"  # unexpected exceptions a reply worker survived


@dataclass(slots=True)
class Stats:
    """Counters of what the service has seen and done."""

    totals: Counter[Count] = field(default_factory=Counter)
    event_types: Counter[str] = field(default_factory=Counter)  # one name per event class
    triggers: Counter[str] = field(default_factory=Counter)  # mention, word, pm
    decisions: Counter[Reason] = field(default_factory=Counter)  # after a trigger fired
    ignored: Counter[Reason] = field(default_factory=Counter)  # filtered before any trigger
    memory: Counter[str] = field(default_factory=Counter)  # kryten_llm.memory's MemoryEvent

    def snapshot(self) -> dict[str, int]:
        """Every counter under its flat name, sorted (heartbeats, ``/api/state``)."""
        flat: dict[str, int] = {key.value: n for key, n in self.totals.items()}
        flat |= {f"event_type:{key}": n for key, n in self.event_types.items()}
        flat |= {f"trigger_{key}": n for key, n in self.triggers.items()}
        flat |= {f"decision_{key.value}": n for key, n in self.decisions.items()}
        flat |= {f"ignored_{key.value}": n for key, n in self.ignored.items()}
        flat |= {f"memory_{key}": n for key, n in self.memory.items()}
        return dict(sorted(flat.items()))

    def __getitem__(self, name: str) -> int:
        """One counter by its flat name (0 when never counted); for tests and quick looks."""
        return self.snapshot().get(name, 0)
