"""The books of an exploration run: every unique item, and what every answer line was.

Each line of an answer is classified once, against every item from every producer:
rejected (a header, too long, nothing left after normalising), exact duplicate, near duplicate
(:mod:`~kryten_llm.explore.dedup`), or new. :class:`Ledger` keeps the items and the counters,
per provider and in total, so that ``received = new + exact + near + rejected`` holds in both;
it also counts requests, failures, tokens and cost. The :class:`~kryten_llm.explore.explorer.
Explorer` decides what to do with the results (stop conditions, checkpoints, the pool).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kryten_llm.explore.dedup import DedupIndex, Verdict
from kryten_llm.explore.items import is_header, parse_items

if TYPE_CHECKING:
    from kryten_llm.explore.digest import Digest
    from kryten_llm.explore.output import Checkpoint
    from kryten_llm.explore.producer import ProducerState
    from kryten_llm.explore.settings import ExploreSettings
    from kryten_llm.llm.base import Completion

# The counter each verdict of the index adds to.
_COUNTER = {
    Verdict.NEW: "new",
    Verdict.EXACT: "exact_duplicates",
    Verdict.NEAR: "near_duplicates",
    Verdict.EMPTY: "rejected",
}


def now() -> str:
    """Wall time for records and reports: UTC ISO-8601 to the millisecond."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(slots=True)
class Counts:
    """Counters of one provider or of the whole run; received = new + exact + near + rejected."""

    requests: int = 0
    failures: int = 0
    responses: int = 0
    received: int = 0
    new: int = 0
    exact_duplicates: int = 0
    near_duplicates: int = 0
    rejected: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    @classmethod
    def from_dict(cls, data: Any) -> Counts:
        counts = cls()
        if isinstance(data, dict):
            for name in cls.__dataclass_fields__:
                value = data.get(name)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    setattr(counts, name, type(getattr(counts, name))(value))
        return counts

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["yield"] = round(self.new / self.received, 4) if self.received else None
        dups = self.exact_duplicates + self.near_duplicates
        data["duplicate_rate"] = round(dups / self.received, 4) if self.received else None
        data["cost_usd"] = round(self.cost_usd, 6)
        return data


class Ledger:
    """The unique items of a run and its counters.

    Args:
        settings: the run's settings (similarity, item length, target).
        digest: told about every new item, for the next prompts.
    """

    def __init__(self, settings: ExploreSettings, digest: Digest) -> None:
        self._index = DedupIndex(settings.similarity)
        self._digest = digest
        self._max_item_chars = settings.max_item_chars
        self._target = settings.target
        self.items: list[dict[str, Any]] = []
        self.totals = Counts()
        self.providers: dict[str, Counts] = {}
        self.resumed = 0  # items taken from a checkpoint

    def of(self, provider: str) -> Counts:
        """The counters of ``provider`` (created at zero)."""
        return self.providers.setdefault(provider, Counts())

    def target_reached(self) -> bool:
        return self._target is not None and len(self.items) >= self._target

    def record(self, producer: ProducerState, completion: Completion) -> tuple[list[str], int]:
        """Classify every line of one answer (until the target is reached) and keep new items.

        Returns:
            The new lines, in order, and how many lines were received.
        """
        by_provider = self.of(producer.provider)
        new: list[str] = []
        received = 0
        for line in parse_items(completion.text):
            if self.target_reached():
                break
            received += 1
            if is_header(line) or len(line) > self._max_item_chars:
                kind = "rejected"
            else:
                kind = _COUNTER[self._index.check_and_add(line).verdict]
            for counts in (self.totals, by_provider):
                setattr(counts, kind, getattr(counts, kind) + 1)
            if kind == "new":
                new.append(line)
                self.items.append(
                    {
                        "text": line,
                        "producer": producer.name,
                        "provider": producer.provider,
                        "model": completion.model,
                        "iteration": producer.iteration,
                        "time": now(),
                    }
                )
                self._digest.observe(line)
        self.totals.received += received
        by_provider.received += received
        return new, received

    def count_usage(self, provider: str, completion: Completion, cost: float) -> None:
        """Count an answer's tokens and cost (paid for, even when it came after a stop)."""
        usage = completion.usage
        for counts in (self.totals, self.of(provider)):
            counts.responses += 1
            if usage is not None:
                counts.prompt_tokens += usage.prompt_tokens
                counts.completion_tokens += usage.completion_tokens
            counts.cost_usd += cost

    def count_requests(self, producers: Iterable[ProducerState]) -> None:
        """Fold the producers' request and failure counts into the counters."""
        for producer in producers:
            requests = producer.session_requests - producer.counted_requests
            failures = producer.failures - producer.counted_failures
            if requests or failures:
                for counts in (self.totals, self.of(producer.provider)):
                    counts.requests += requests
                    counts.failures += failures
            producer.counted_requests = producer.session_requests
            producer.counted_failures = producer.failures

    def restore(self, checkpoint: Checkpoint) -> None:
        """Take a checkpoint's items and counters as already known."""
        for item in checkpoint.items:
            self._index.add(item["text"])
            self._digest.observe(item["text"])
            self.items.append(item)
        state = checkpoint.state
        self.totals = Counts.from_dict(state.get("totals"))
        providers = state.get("providers")
        if isinstance(providers, dict):
            for name, data in providers.items():
                self.providers[str(name)] = Counts.from_dict(data)
        self.resumed = len(checkpoint.items)
        # Items the checkpoint holds beyond its counters (none, unless edited) still add up.
        missing = len(self.items) - self.totals.new
        if missing > 0:
            self.totals.new += missing
            self.totals.received += missing

    def state(self) -> dict[str, Any]:
        """The counters as a checkpoint stores them."""
        return {
            "totals": asdict(self.totals),
            "providers": {name: asdict(c) for name, c in self.providers.items()},
        }
