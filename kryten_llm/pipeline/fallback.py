"""What the bot says when no provider answers: lines from the fallback pools.

Pools are filled ahead of time by ``kryten-llm explore --for-trigger NAME`` or
``--for-personality`` (see :mod:`kryten_llm.pools`). They are all loaded at startup, so a
broken pool file stops the bot with a config error instead of failing the one reply that needs
it. A trigger word uses its own pool first, then the active personality's; a mention or a PM uses
the personality's. Each pool hands out its lines in a shuffled rotation, never the same line
twice in a row.

The bot only reads pool files: an explore run may be adding lines to the same file at that
moment, and a write from the bot would lose them. A file that changed since it was read is read
again before its next line is taken, so new lines are used without a restart; the rotation's
position lives in memory (a restart starts a new shuffle).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from kryten_llm.errors import ConfigError
from kryten_llm.pools import FallbackPool, personality_pool_name, pool_file_name

if TYPE_CHECKING:
    from collections.abc import Iterable

    from kryten_llm.config import Settings
    from kryten_llm.pipeline.decisions import TriggerMatch

log = structlog.get_logger(__name__)


@dataclass
class _Entry:
    pool: FallbackPool
    mtime: int | None
    last: str | None = None


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


class FallbackPools:
    """Every pool the bot may need, by pool name.

    Args:
        folder: the pool folder.
        triggers: the configured trigger words' names.
        personalities: the configured personalities' names.

    Raises:
        ConfigError: a pool file exists but cannot be read as a pool.
    """

    @classmethod
    def from_settings(cls, settings: Settings) -> FallbackPools | None:
        """The pools the config names, or ``None`` when fallback is off.

        Raises:
            ConfigError: a pool file is unreadable or holds lines the bot may not say.
        """
        if not settings.fallback.enabled:
            return None
        return cls(
            settings.fallback.pool_dir,
            [word.name for _, triggers in settings.trigger_sets() for word in triggers.words],
            settings.personalities,
        )

    def __init__(self, folder: Path, triggers: Iterable[str], personalities: Iterable[str]) -> None:
        self._folder = Path(folder)
        names = [*triggers, *(personality_pool_name(p) for p in personalities)]
        self._pools = {name: self._load(name) for name in names}

    def _load(self, name: str) -> _Entry:
        path = self._folder / pool_file_name(name)
        mtime = _mtime(path)
        return _Entry(FallbackPool.load(self._folder, name, autosave=False), mtime)

    def _fresh(self, name: str) -> _Entry | None:
        """The pool, read again first when its file changed since the last read."""
        entry = self._pools.get(name)
        if entry is None:
            return None
        if _mtime(self._folder / pool_file_name(name)) != entry.mtime:
            with contextlib.suppress(ConfigError):  # half-written by hand: keep what we had
                last = entry.last
                entry = self._pools[name] = self._load(name)
                entry.last = last
                entry.pool.follow(last)
                log.info("fallback_pool_reloaded", pool=name, lines=len(entry.pool))
        return entry

    @property
    def total_lines(self) -> int:
        return sum(len(entry.pool) for entry in self._pools.values())

    def sizes(self) -> dict[str, int]:
        return {name: len(e.pool) for name, e in self._pools.items() if len(e.pool)}

    def line_for(self, trigger: TriggerMatch, personality: str) -> tuple[str, str] | None:
        """``(pool name, line)`` for a reply to ``trigger``, or None when no pool has a line."""
        names = [personality_pool_name(personality)]
        if trigger.kind == "word":
            names.insert(0, trigger.name)
        for name in names:
            entry = self._fresh(name)
            if entry is None or not len(entry.pool):
                continue
            line = entry.pool.next_line()
            if line is not None:
                entry.last = line
                return name, line
        return None
