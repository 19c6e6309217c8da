"""Which layer a configuration value comes from (``kryten-llm validate-config --explain KEY``).

With six layers (:mod:`kryten_llm.config.layers`) an operator needs to see why a value is what
it is: this module finds the strongest layer that sets a key and the value in force, redacted.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic_settings import EnvSettingsSource

from kryten_llm.config.base import ENV_PREFIX
from kryten_llm.config.layers import Sources
from kryten_llm.config.overrides import dotted, lookup, parse_path
from kryten_llm.config.redact import redacted
from kryten_llm.config.settings import Settings
from kryten_llm.errors import ConfigError


def explain(key: str, settings: Settings, sources: Sources, cli: dict[str, Any]) -> list[str]:
    """Lines saying the value in force at ``key`` and the layer it comes from.

    Raises:
        ConfigError: no such key (with the keys one level up).
    """
    path = parse_path(key)
    found, value = lookup(redacted(settings), path)
    if not found:
        parent_found, parent = lookup(redacted(settings), path[:-1])
        known = ", ".join(parent) if parent_found and isinstance(parent, dict) else "see README"
        raise ConfigError([(key, "no such key", f"keys here: {known}")])
    return [f"{dotted(path)} = {_show(value)}", f"  from: {_origin(path, sources, cli)}"]


def _origin(path: tuple[str, ...], sources: Sources, cli: dict[str, Any]) -> str:
    if lookup(cli, path)[0]:
        return "the command line"
    for override in reversed(sources.overrides):
        n = min(len(override.path), len(path))
        if override.path[:n] == path[:n]:
            by = f" by {override.by}" if override.by else ""
            at = f" at {override.at}" if override.at else ""
            return f"runtime override in {sources.overrides_path}{by}{at}"
    if lookup(EnvSettingsSource(Settings)(), path)[0]:
        return f"environment ({ENV_PREFIX}{'__'.join(p.upper() for p in path)})"
    for layer in reversed(sources.files):
        if lookup(layer.data, path)[0]:
            return f"{layer.name} file {layer.path}"
    return "default"


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
