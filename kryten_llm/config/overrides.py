"""Runtime overrides: changes an operator made while the bot ran, kept across restarts.

An override is one value at one key path, e.g. ``("triggers", "words", "popcorn",
"probability") = 0.5``. Items of the two named lists are addressed by their identity, not by
position: trigger words by ``name`` and channels by their key (``"cytu.be/mychannel"``), so an
override keeps pointing at the same trigger when the file's list is reordered or grows.

They are the strongest configuration layer (see :mod:`kryten_llm.config.layers`) and live in
one JSON file beside the config file, written atomically by the bot (see
:mod:`kryten_llm.bot.tuning`)::

    {"schema": 1, "overrides": [{"path": [...], "value": ..., "by": "...", "at": "..."}]}

A corrupt file is a :class:`~kryten_llm.errors.ConfigError` naming it and the fix: the bot never
starts with the operator's changes silently dropped.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kryten_llm.config.runtime import channel_key
from kryten_llm.errors import ConfigError

SCHEMA = 1
DEFAULT_DOMAIN = "cytu.be"

KeyPath = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Override:
    """One runtime change: ``value`` at ``path``, who made it and when (ISO 8601, UTC)."""

    path: KeyPath
    value: Any
    by: str = ""
    at: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"path": list(self.path), "value": self.value, "by": self.by, "at": self.at}


def dotted(path: Sequence[str]) -> str:
    """``("channels", "cytu.be/x", "personality")`` -> ``channels[cytu.be/x].personality``."""
    out = ""
    for part in path:
        out += f"[{part}]" if "." in part or "/" in part else (f".{part}" if out else part)
    return out


_SEGMENT = re.compile(r"([^.\[\]]+)|\[([^\]]+)\]")


def parse_path(text: str) -> KeyPath:
    """The inverse of :func:`dotted`: ``a.b[c.d].e`` -> ``("a", "b", "c.d", "e")``.

    Raises:
        ConfigError: the text is empty or not a key path.
    """
    parts = tuple(m.group(1) or m.group(2) for m in _SEGMENT.finditer(text))
    if not parts or "".join(_SEGMENT.sub("", text).split(".")):
        raise ConfigError([(text or "(empty)", "not a key path", "write it like triggers.words")])
    return parts


def _item_key(item: dict[str, Any]) -> str:
    """A raw ``channels[]`` entry's key, as :attr:`ChannelConfig.key` computes it."""
    return channel_key(str(item.get("domain", DEFAULT_DOMAIN)), str(item.get("channel", "")))


# The lists whose items an override addresses by identity, with how an item is named.
_NAMED_LISTS = {
    "words": lambda item: str(item.get("name", "")),
    "channels": _item_key,
}


def _identify(list_name: str, wanted: str) -> Any:
    name_of = _NAMED_LISTS[list_name]
    return lambda item: (
        isinstance(item, dict)
        and (name_of(item) == (wanted.lower() if list_name == "channels" else wanted))
    )


def lookup(data: Any, path: KeyPath) -> tuple[bool, Any]:
    """``(True, value)`` at ``path`` in raw config data, ``(False, None)`` when absent."""
    node = data
    for i, part in enumerate(path):
        if isinstance(node, list) and i > 0 and path[i - 1] in _NAMED_LISTS:
            found = [item for item in node if _identify(path[i - 1], part)(item)]
            if not found:
                return False, None
            node = found[0]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return False, None
    return True, node


def apply_overrides(files: dict[str, Any], overrides: Iterable[Override]) -> dict[str, Any]:
    """The overrides as a sparse config layer over ``files`` (the merged file layers).

    A plain key becomes just that key; a key inside a named list carries the whole list (from
    ``files``, with the change), since a list is replaced as a unit when layers merge.

    Raises:
        ConfigError: an override names a trigger word or channel the files do not have.
    """
    merged = copy.deepcopy(files)
    sparse: dict[str, Any] = {}
    lists: set[KeyPath] = set()
    problems: list[tuple[str, str, str]] = []
    for override in overrides:
        try:
            outer = _set(merged, override.path, copy.deepcopy(override.value))
        except _Missing as exc:
            problems.append(
                (dotted(override.path), exc.problem, "reset this override or add the item back")
            )
            continue
        if outer is not None:
            lists.add(outer)
        else:
            _set(sparse, override.path, copy.deepcopy(override.value))
    if problems:
        raise ConfigError(problems)
    for path in lists:
        _set(sparse, path, copy.deepcopy(lookup(merged, path)[1]))
    return sparse


class _Missing(Exception):
    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def _set(data: dict[str, Any], path: KeyPath, value: Any) -> KeyPath | None:
    """Put ``value`` at ``path``, creating dicts on the way; the outermost named list crossed."""
    node: Any = data
    outer: KeyPath | None = None
    for i, part in enumerate(path[:-1]):
        if isinstance(node, list):
            found = [item for item in node if _identify(path[i - 1], part)(item)]
            if not found:
                names = sorted(_NAMED_LISTS[path[i - 1]](item) for item in node)
                raise _Missing(
                    f"no item {part!r} in {dotted(path[:i])} (configured: "
                    f"{', '.join(names) or 'none'})"
                )
            node = found[0]
            continue
        if part in _NAMED_LISTS:
            if outer is None:
                outer = path[: i + 1]
            node = node.setdefault(part, [])
            continue
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    if isinstance(node, list):
        raise _Missing(f"{dotted(path)} names a whole list item: change one of its keys")
    node[path[-1]] = value
    return outer


def read_overrides(path: Path) -> list[Override]:
    """The overrides in ``path``; none when it does not exist.

    Raises:
        ConfigError: the file is unreadable or not in the format above (with the fix).
    """
    fix = f"repair or delete {path} (deleting it drops the runtime changes)"
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError([(str(path), f"cannot read ({exc.strerror})", fix)]) from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            [(str(path), f"not valid JSON: {exc.msg} at line {exc.lineno}", fix)]
        ) from None
    entries = data.get("overrides") if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(entries, list):
        raise ConfigError(
            [
                (
                    str(path),
                    f'not an overrides file (want {{"schema": {SCHEMA}, "overrides": [...]}})',
                    fix,
                )
            ]
        )
    found: list[Override] = []
    for i, entry in enumerate(entries):
        parts = entry.get("path") if isinstance(entry, dict) else None
        if (
            not isinstance(parts, list)
            or not parts
            or not all(isinstance(p, str) and p for p in parts)
            or "value" not in entry
        ):
            raise ConfigError(
                [(f"{path}: overrides.{i}", "wants a non-empty path list and a value", fix)]
            )
        found.append(
            Override(
                tuple(parts), entry["value"], str(entry.get("by", "")), str(entry.get("at", ""))
            )
        )
    return found


def render_overrides(overrides: Iterable[Override]) -> bytes:
    """The file content for ``overrides`` (see the module docstring)."""
    body = {"schema": SCHEMA, "overrides": [o.to_json() for o in overrides]}
    return (json.dumps(body, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
