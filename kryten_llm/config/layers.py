"""Where the configuration comes from: the layers, found and merged in one place.

Weakest first, each deep-merged over the one before (a layer sets only the keys it names; a
list is replaced as a whole):

1. the built-in defaults;
2. the ``--config`` file;
3. ``config.local.json`` in the same folder (the current folder without ``--config``): local
   changes kept out of the shared file;
4. the file named by ``KRYTEN_LLM_CONFIG``, when ``--config`` is not given;
5. ``KRYTEN_LLM_*`` environment variables (``__`` nests);
6. runtime overrides (:mod:`kryten_llm.config.overrides`), in ``<config stem>.overrides.json``
   beside the config file (``kryten-llm.overrides.json`` without one).

:func:`kryten_llm.config.load_settings` reads them; a reload reads them again the same way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kryten_llm.config.overrides import Override, apply_overrides, read_overrides
from kryten_llm.errors import ConfigError

LOCAL_FILE = "config.local.json"
CONFIG_ENV = "KRYTEN_LLM_CONFIG"


@dataclass(frozen=True, slots=True)
class Layer:
    """One configuration file's content and what it is (``config``, ``local``, ``env-file``)."""

    name: str
    path: Path
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Sources:
    """Every file layer found for one ``--config`` (or none), plus the runtime overrides."""

    config: Path | None
    files: tuple[Layer, ...]
    overrides_path: Path
    overrides: tuple[Override, ...] = ()
    _merged: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def merged(self) -> dict[str, Any]:
        """The file layers deep-merged, weakest first."""
        return self._merged

    def runtime_layer(self, below: dict[str, Any]) -> dict[str, Any]:
        """The overrides as a sparse layer over ``below`` (every other layer, merged: a list
        item is found wherever it was configured); raises ConfigError for a vanished item."""
        return apply_overrides(below, self.overrides) if self.overrides else {}


def overrides_path(config: Path | None) -> Path:
    """Where runtime overrides are kept for ``config``."""
    if config is None:
        return Path("kryten-llm.overrides.json")
    return config.with_name(f"{config.stem}.overrides.json")


def find_sources(
    config: Path | None,
    *,
    overrides: Sequence[Override] | None = None,
    given: dict[str, Any] | None = None,
    overrides_file: Path | None = None,
) -> Sources:
    """Read every layer for ``config``.

    Args:
        config: the ``--config`` file, if given.
        overrides: use these instead of reading the overrides file (a change being checked).
        given: settings built in code (tests, embedding): they replace the file layers.
        overrides_file: keep the overrides here instead of beside the config file.

    Raises:
        ConfigError: a file is unreadable or not a JSON object; the overrides file is corrupt.
    """
    where = overrides_file or overrides_path(config)
    found = tuple(overrides) if overrides is not None else tuple(read_overrides(where))
    if given is not None:
        return Sources(
            config, (Layer("given", Path("(settings given in code)"), given),), where, found, given
        )
    files: list[Layer] = []
    if config is not None:
        files.append(Layer("config", config, read_json_object(config, "check the --config path")))
    local = (config.parent if config is not None else Path()) / LOCAL_FILE
    if local.is_file():
        files.append(Layer("local", local, read_json_object(local, f"fix or remove {local}")))
    named = os.environ.get(CONFIG_ENV)
    if config is None and named:
        path = Path(named)
        files.append(Layer("env-file", path, read_json_object(path, f"fix {CONFIG_ENV}")))
    merged: dict[str, Any] = {}
    for layer in files:
        merged = deep_merge(merged, layer.data)
    return Sources(config, tuple(files), where, found, merged)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``: nested objects merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in over.items():
        old = out.get(key)
        out[key] = (
            deep_merge(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
        )
    return out


def read_json_object(path: Path, fix: str) -> dict[str, Any]:
    """A config file's JSON object; every failure is a ConfigError naming the file."""
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([(str(path), f"cannot read ({exc.strerror})", fix)]) from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise ConfigError(
            [(str(path), f"not valid JSON: {exc.msg} at {where}", "fix the JSON")]
        ) from None
    if not isinstance(data, dict):
        raise ConfigError([(str(path), "must hold a JSON object", "wrap the sections in { }")])
    return data
