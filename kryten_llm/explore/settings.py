"""The settings of one exploration run, and the one place their limits are checked.

:class:`ExploreSettings` is what shapes a run (recorded in ``metadata.json``). Each number has a
rule in :data:`LIMITS`; :func:`invalid_settings` checks values against them and is used both by
the settings themselves (a bad value raises :class:`~kryten_llm.errors.ExploreError`) and by
the command line, which names its own flags in what it prints. The near-duplicate threshold is
checked here and only here: :class:`~kryten_llm.explore.dedup.DedupIndex` takes it as given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from kryten_llm.errors import ExploreError
from kryten_llm.explore.dedup import DEFAULT_THRESHOLD
from kryten_llm.explore.digest import DEFAULT_MAX_CHARS

MAX_BATCH = 500


def _at_least_one(value: Any) -> bool:
    return value is None or value >= 1


# field -> (the rule in words, whether a value keeps it); None means "no limit" where allowed.
LIMITS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "producers": ("at least 1", lambda v: v >= 1),
    "iterations": (">= 1", _at_least_one),
    "target": (">= 1", _at_least_one),
    "min_yield": ("between 0 and 1", lambda v: 0 <= v <= 1),
    "yield_window": (">= 1", lambda v: v >= 1),
    "similarity": ("in (0, 1]", lambda v: 0 < v <= 1),
    "batch": (f"between 1 and {MAX_BATCH}", lambda v: 1 <= v <= MAX_BATCH),
    "max_item_chars": (">= 1", lambda v: v >= 1),
    "request_timeout": ("> 0", lambda v: v > 0),
    "checkpoint_items": (">= 1", lambda v: v >= 1),
    "checkpoint_seconds": ("> 0", lambda v: v > 0),
}


def invalid_settings(values: Mapping[str, Any]) -> list[tuple[str, Any, str]]:
    """The values that break their rule in :data:`LIMITS`, as ``(field, value, rule)``.

    Args:
        values: setting values by field name; fields without a rule, or missing, are skipped.
    """
    return [
        (name, values[name], rule)
        for name, (rule, ok) in LIMITS.items()
        if name in values and not ok(values[name])
    ]


@dataclass(frozen=True, slots=True)
class ExploreSettings:
    """Everything that shapes one run (recorded in ``metadata.json``).

    ``iterations`` counts requests per producer in this session; ``target`` counts unique
    items over the whole run, resumed sessions included.

    Raises:
        ExploreError: a value breaks its rule in :data:`LIMITS`.
    """

    topic: str
    producers: int = 2
    iterations: int | None = None
    target: int | None = None
    min_yield: float = 0.05
    yield_window: int = 20
    similarity: float = DEFAULT_THRESHOLD
    batch: int = 20
    max_item_chars: int = 200
    request_timeout: float = 60.0
    max_tokens: int | None = None
    checkpoint_items: int = 50
    checkpoint_seconds: float = 1.0
    digest_chars: int = DEFAULT_MAX_CHARS
    instructions: str = ""
    max_consecutive_failures: int = 5
    backoff_seconds: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        problems = invalid_settings(asdict(self))
        if problems:
            raise ExploreError(
                "invalid settings: "
                + "; ".join(f"{name} is {value}, must be {rule}" for name, value, rule in problems)
            )
