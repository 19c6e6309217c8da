"""Inline provider specs: ``--provider openai:http://127.0.0.1:8080/v1`` without a config file.

The one parser of the ``TYPE[:WHERE]`` syntax shared by the command lines that take a
``--provider`` (``batch``, ``explore``); they first look the value up among the configured
providers and only then call :func:`parse_provider_spec`. The syntax:

==========================  ==============================================================
``TYPE``                    a registered type alone (``scripted``, ``openai``...), defaults
``openai:URL``              an OpenAI-compatible server at URL (``base_url``)
``anthropic:URL``           the Messages API at URL (``base_url``)
``local:PATH``              a GGUF model file run in-process (``model_path``)
``scripted:wordlist|echo``  the scripted provider as the explorer's word list, or an echo
``random[:SEED]``           seeded random list items with known duplicates (no network)
==========================  ==============================================================

Without a model in the spec or from the caller, the model is ``auto`` (the first one the
server lists) for HTTP types, ``local`` for a local file, ``wordlist`` for ``scripted`` and
``random`` for ``random``, unless the caller gives another ``default_model``.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from kryten_llm.config import ProviderConfig
from kryten_llm.errors import ConfigError
from kryten_llm.llm.base import provider_types

SCRIPTED_MODELS = ("wordlist", "echo")
_DEFAULT_MODELS = {"local": "local", "scripted": "wordlist", "random": "random"}


def parse_provider_spec(
    spec: str,
    *,
    model: str | None = None,
    api_key_env: str | None = None,
    default_model: str | None = None,
) -> tuple[str, ProviderConfig]:
    """The provider type and configuration an inline ``--provider`` spec describes.

    Args:
        spec: ``TYPE`` or ``TYPE:WHERE`` (see the module docstring).
        model: the model asked for (``--model``); the spec's own ``scripted:MODEL`` wins.
        api_key_env: the variable holding the key of an ``openai``/``anthropic`` spec.
        default_model: the model when neither the spec nor ``model`` names one; None means
            ``auto`` for HTTP types, ``local`` for a GGUF file, ``wordlist`` for scripted.

    Returns:
        The type name and the provider's configuration.

    Raises:
        ConfigError: an unknown type, a missing or malformed place, an invalid value.
    """
    kind, colon, where = spec.partition(":")
    types = provider_types()
    if kind not in types:
        raise ConfigError(
            [
                (
                    f"--provider {spec}",
                    f"{kind!r} is not a provider type ({', '.join(types)})",
                    "give a configured provider name, a type, or TYPE:WHERE, "
                    "e.g. openai:http://127.0.0.1:8080/v1",
                )
            ]
        )
    if colon and not where:
        raise ConfigError(
            [(f"--provider {spec}", "nothing after the ':'", f"give {kind}:WHERE or just {kind}")]
        )
    chosen = model or default_model or _DEFAULT_MODELS.get(kind, "auto")
    values: dict[str, Any] = {"type": kind, "model": chosen}
    if kind == "scripted":
        if where and where not in SCRIPTED_MODELS:
            raise ConfigError(
                [
                    (
                        f"--provider {spec}",
                        f"unknown scripted mode {where!r}",
                        f"use scripted, or scripted:{' or scripted:'.join(SCRIPTED_MODELS)}",
                    )
                ]
            )
        values["model"] = where or chosen
    elif kind == "random":
        if where:
            if not where.isdigit():
                raise ConfigError(
                    [(f"--provider {spec}", f"{where!r} is not a seed", "use random or random:N")]
                )
            values["seed"] = int(where)
    elif kind == "local":
        if where:
            values["model_path"] = where
    else:
        if where:
            values["base_url"] = where
        values["api_key_env"] = api_key_env
    try:
        return kind, ProviderConfig(**values)
    except ValidationError as exc:
        problems = [
            (f"--provider {spec}", str(err.get("msg")), "check the spec") for err in exc.errors()
        ]
        raise ConfigError(problems) from None
