"""What the bot says when no provider answers: lines from the fallback pools.

Pools are filled ahead of time by ``kryten-llm explore --for-trigger NAME`` or
``--for-personality`` (see :mod:`kryten_llm.explore.pool`). They are all loaded at startup, so a
broken pool file stops the bot with a config error instead of failing the one reply that needs
it. A trigger word uses its own pool first, then the active personality's; a mention or a PM uses
the personality's. Each pool hands out its lines in a shuffled rotation, never the same line
twice in a row.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from kryten_llm.explore.pool import FallbackPool, personality_pool_name

if TYPE_CHECKING:
    from collections.abc import Iterable

    from kryten_llm.pipeline.decisions import TriggerMatch


class FallbackPools:
    """Every pool the bot may need, by pool name.

    Args:
        folder: the pool folder.
        triggers: the configured trigger words' names.
        personalities: the configured personalities' names.

    Raises:
        ConfigError: a pool file exists but cannot be read as a pool.
    """

    def __init__(self, folder: Path, triggers: Iterable[str], personalities: Iterable[str]) -> None:
        names = [*triggers, *(personality_pool_name(p) for p in personalities)]
        self._pools = {name: FallbackPool.load(folder, name) for name in names}

    @property
    def total_lines(self) -> int:
        return sum(len(pool) for pool in self._pools.values())

    def sizes(self) -> dict[str, int]:
        return {name: len(pool) for name, pool in self._pools.items() if len(pool)}

    def line_for(self, trigger: TriggerMatch, personality: str) -> tuple[str, str] | None:
        """``(pool name, line)`` for a reply to ``trigger``, or None when no pool has a line."""
        names = [personality_pool_name(personality)]
        if trigger.kind == "word":
            names.insert(0, trigger.name)
        for name in names:
            pool = self._pools.get(name)
            if pool is not None and len(pool):
                line = pool.next_line()
                if line is not None:
                    return name, line
        return None
