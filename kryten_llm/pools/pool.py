"""Fallback pools: lines the live bot can say when no provider answers.

This package sits below both users of a pool: the live bot reads pools
(:mod:`kryten_llm.pipeline.fallback`) and the explorer fills them (:mod:`kryten_llm.explore`),
so the bot never imports the explorer.

``kryten-llm explore --for-trigger NAME`` (or ``--for-personality``) fills a pool with unique
lines; the bot's responder takes one with :meth:`FallbackPool.next_line` when every provider
failed. A pool is one JSON file, ``<pool dir>/<name>.json``::

    {"version": 1, "name": "films", "lines": ["…", "…"], "order": [3, 0, 2], "last": 1}

Lines are handed out as a shuffled cycle: each line once per cycle, then a new shuffle. The
line that ended a cycle never starts the next one, so the same line never comes twice in a
row. The one exception: a pool of a single line hands out that line every time (there is
nothing else to say). With ``autosave``, the position in the cycle is saved after every line
(atomically, see :func:`kryten_llm.files.atomic_write`) for explore's own use and for
other readers of the file; the bot does not use it: it only reads pool files and keeps its
position in memory (a restarted bot starts a new shuffle, see
:mod:`kryten_llm.pipeline.fallback`). A hand-written file holding just a JSON list of strings
is accepted too.

Several explore runs may fill the same pool at once: :meth:`FallbackPool.save` takes an
exclusive lock on a sibling file (``.<name>.json.lock``), reads the file again and keeps the
lines others added since (their order kept, duplicates dropped) before it writes.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from kryten_llm.errors import ConfigError
from kryten_llm.files import atomic_write, dump_json, exclusive_lock
from kryten_llm.pools.text import normalize, slug

DEFAULT_POOL_DIR = Path("fallback")
PERSONALITY_PREFIX = "personality-"


def pool_file_name(name: str) -> str:
    """The file of pool ``name`` inside the pool folder (``"films"`` -> ``"films.json"``)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip(".")
    return f"{safe or 'pool'}.json"


def personality_pool_name(personality: str) -> str:
    """The pool name used for a personality's lines (``"personality-cynthia"``)."""
    return PERSONALITY_PREFIX + slug(personality)


class FallbackPool:
    """A persisted rotation of unique lines.

    Build it with :meth:`load`. Not thread-safe; several processes may add to one pool file
    (each save merges what the others wrote).

    Args:
        path: the JSON file.
        name: the trigger (or personality pool) name.
        lines: the unique lines, in the order they were added.
        order: indices of ``lines`` still to hand out in the current cycle, next first.
        last: index of the line handed out last, or None.
        rng: the shuffle's random generator (inject a seeded one in tests).
        autosave: save after every change (the default); else call :meth:`save`.
    """

    def __init__(
        self,
        path: Path,
        name: str,
        lines: list[str] | None = None,
        *,
        order: list[int] | None = None,
        last: int | None = None,
        rng: random.Random | None = None,
        autosave: bool = True,
    ) -> None:
        self.path = path
        self.name = name
        self._lines: list[str] = list(lines or [])
        self._keys = {normalize(line) for line in self._lines}
        count = len(self._lines)
        self._order = [i for i in (order or []) if 0 <= i < count]
        self._last = last if last is not None and 0 <= last < count else None
        self._rng = rng or random.Random()
        self.autosave = autosave

    @classmethod
    def load(
        cls,
        folder: Path | str,
        trigger_name: str,
        *,
        rng: random.Random | None = None,
        autosave: bool = True,
    ) -> FallbackPool:
        """The pool of ``trigger_name`` in ``folder``; an empty one when it has no file yet.

        Args:
            folder: the pool folder (``fallback/`` by default).
            trigger_name: the trigger word's name, or :func:`personality_pool_name`.
            rng: the shuffle's random generator.
            autosave: save after every change.

        Raises:
            ConfigError: the file exists but is not a pool (unreadable, not JSON, wrong shape).
        """
        path = Path(folder) / pool_file_name(trigger_name)
        data = _read(path)
        if data is None:
            return cls(path, trigger_name, rng=rng, autosave=autosave)
        lines, order, last = data["lines"], data.get("order", []), data.get("last")
        if not (isinstance(order, list) and all(isinstance(x, int) for x in order)):
            order = []
        if not isinstance(last, int):
            last = None
        pool = cls(path, trigger_name, rng=rng, autosave=False)
        pool.add(lines)  # drops blanks and duplicates of a hand-edited file
        pool._order = [i for i in dict.fromkeys(order) if 0 <= i < len(pool._lines)]
        pool._last = last if last is not None and 0 <= last < len(pool._lines) else None
        pool.autosave = autosave
        return pool

    def __len__(self) -> int:
        return len(self._lines)

    @property
    def lines(self) -> list[str]:
        """A copy of the unique lines, in the order they were added."""
        return list(self._lines)

    def add(self, lines: list[str] | tuple[str, ...]) -> int:
        """Add the lines not already in the pool (compared normalised); blanks are skipped.

        New lines join the current cycle at random places, so they are heard before the next
        reshuffle. With ``autosave``, a save that fails takes the lines out again, so adding
        them later is not a no-op.

        Returns:
            How many lines were added.

        Raises:
            OSError: the autosave failed.
        """
        before = (len(self._lines), list(self._order))
        added = 0
        for line in lines:
            line = line.strip()
            key = normalize(line)
            if not key or key in self._keys:
                continue
            self._keys.add(key)
            self._lines.append(line)
            self._order.insert(self._rng.randint(0, len(self._order)), len(self._lines) - 1)
            added += 1
        if added and self.autosave:
            try:
                self.save()
            except OSError:
                count, self._order = before
                for line in self._lines[count:]:
                    self._keys.discard(normalize(line))
                del self._lines[count:]
                raise
        return added

    def follow(self, line: str | None) -> None:
        """Carry on as if ``line`` was the last one handed out (a reader that read the file
        again must not start with the line it said just before)."""
        if line is not None and line in self._lines:
            self._last = self._lines.index(line)

    def next_line(self) -> str | None:
        """The next line of the rotation, or None for an empty pool.

        Each line comes once per cycle; the first line of a new cycle is never the line that
        ended the previous one, unless the pool has a single line, which then comes every time.
        The new position is saved when ``autosave`` is on.
        """
        if not self._lines:
            return None
        if not self._order:
            self._order = self._shuffled()
        index = self._order.pop(0)
        if index == self._last and self._order:
            # Only possible when new lines were added mid-cycle next to the last one.
            swap = self._rng.randrange(len(self._order))
            self._order[swap], index = index, self._order[swap]
        self._last = index
        if self.autosave:
            self.save()
        return self._lines[index]

    def save(self) -> None:
        """Write the pool file atomically (creating its folder), keeping other writers' lines.

        Under an exclusive lock of ``.<file>.lock``, the file is read again; lines it holds
        that this pool lacks are taken in (they join the current cycle). The file's lines keep
        their order and this pool's new lines follow them.

        Raises:
            OSError: the folder cannot be written.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.path.with_name(f".{self.path.name}.lock")):
            try:
                data = _read(self.path)
            except ConfigError:  # unreadable or broken: ours replaces it, as before
                data = None
            lines, order, last = self._merged(data["lines"] if data is not None else [])
            data = {"version": 1, "name": self.name, "lines": lines, "order": order, "last": last}
            atomic_write(self.path, dump_json(data))
        if lines is not self._lines:  # written: take the other writers' lines in
            self._lines, self._order, self._last = lines, order, last
            self._keys = {normalize(line) for line in lines}

    def _merged(self, theirs: list[str]) -> tuple[list[str], list[int], int | None]:
        """The file's lines ``theirs`` (in their order), then ours not among them, and our
        cycle remapped onto them; their lines we lacked join the cycle at random places.
        Our own lists when there is nothing to take in."""
        merged: dict[str, str] = {}  # normalised -> line, in file order
        for line in theirs:
            line = line.strip()
            key = normalize(line)
            if key and key not in merged:
                merged[key] = line
        if list(merged.values()) == self._lines[: len(merged)]:
            return self._lines, self._order, self._last  # the file holds a prefix of ours
        ours = [normalize(line) for line in self._lines]
        for key, line in zip(ours, self._lines, strict=True):
            merged.setdefault(key, line)
        index = {key: i for i, key in enumerate(merged)}
        remap = [index[key] for key in ours]
        order = [remap[i] for i in self._order]
        last = remap[self._last] if self._last is not None else None
        for key, i in index.items():
            if key not in self._keys:
                order.insert(self._rng.randint(0, len(order)), i)
        return list(merged.values()), order, last

    def _shuffled(self) -> list[int]:
        order = list(range(len(self._lines)))
        self._rng.shuffle(order)
        if len(order) > 1 and order[0] == self._last:
            swap = self._rng.randrange(1, len(order))
            order[0], order[swap] = order[swap], order[0]
        return order


def _read(path: Path) -> dict[str, Any] | None:
    """A pool file's content with ``lines`` checked, or None when there is no file.

    Raises:
        ConfigError: the file cannot be read or is not a pool.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _bad(path, f"cannot read ({exc.strerror})") from None
    try:
        data: Any = json.loads(raw)
    except ValueError:
        raise _bad(path, "not valid JSON") from None
    if isinstance(data, list):
        data = {"lines": data}
    if not isinstance(data, dict):
        raise _bad(path, "must hold a JSON object or a list of strings")
    lines = data.setdefault("lines", [])
    if not (isinstance(lines, list) and all(isinstance(x, str) for x in lines)):
        raise _bad(path, '"lines" must be a list of strings')
    return data


def _bad(path: Path, problem: str) -> ConfigError:
    return ConfigError([(str(path), problem, "fix the file or delete it to start an empty pool")])
