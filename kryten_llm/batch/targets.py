"""Which models a batch asks: ``--provider`` / ``--model`` resolved against the config.

A *target* is one column of comparison: a label (stored as ``model`` in the run store and the
output) and the chain of providers the :class:`~kryten_llm.llm.manager.ProviderManager` tries
for it. A ``--provider`` is, in order of preference:

- a provider name from ``llm.providers`` (``--model`` overrides its model);
- an inline spec parsed by :func:`~kryten_llm.llm.specs.parse_provider_spec`: ``TYPE:URL``
  (``openai:http://127.0.0.1:8080/v1``), ``local:PATH.gguf``, ``scripted[:wordlist|echo]``,
  or a bare registered type (``scripted``), with that type's defaults.

With no ``--provider`` the configured chain (default plus fallbacks) is one target. Several
``--provider`` values run every row on each. The label is ``name/model``, so answers cached in
the store are only reused for the same provider *and* model.

An inline ``openai``/``anthropic`` spec reads its key from ``--api-key-env NAME``, else from
the family's usual variable (:data:`FAMILY_KEYS`), so a refused key names a variable that can
exist. The model ``auto`` (the inline default) and ``all`` are resolved against the server
before the run starts, by :mod:`kryten_llm.batch.discovery`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kryten_llm.config import LLMConfig, ProviderConfig, Settings
from kryten_llm.errors import ConfigError
from kryten_llm.llm.base import provider_types
from kryten_llm.llm.specs import parse_provider_spec

FAMILY_KEYS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
DISCOVERED = ("auto", "all")  # model names the server is asked about before the run


@dataclass(frozen=True, slots=True)
class Target:
    """One model the rows are asked of.

    Attributes:
        label: the name of the answers (``provider/model``), the ``model`` column.
        chain: provider keys tried in order (one unless the configured chain is used).
        model: the model name (the first provider's), as the server knows it.
    """

    label: str
    chain: tuple[str, ...]
    model: str = ""

    @property
    def spec(self) -> str:
        """The label without its model: the provider name or inline spec."""
        return self.label[: -len(self.model) - 1] if self.model else self.label


def resolve_targets(
    settings: Settings,
    providers: Sequence[str],
    models: Sequence[str],
    api_key_env: str | None = None,
) -> tuple[LLMConfig, list[Target]]:
    """The manager's configuration and the targets for ``--provider`` / ``--model``.

    Args:
        settings: the configured providers.
        providers: ``--provider`` values (names or inline specs).
        models: ``--model`` values.
        api_key_env: the key variable of inline specs (``--api-key-env``).

    Returns:
        An LLMConfig holding every provider that may be called (configured ones plus inline
        and model-overridden ones, with the configured retry and circuit settings), and the
        targets in command-line order.

    Raises:
        ConfigError: an unknown provider, or a count of models that matches nothing.
    """
    llm = settings.llm
    configs: dict[str, ProviderConfig] = dict(llm.providers)
    targets: list[Target] = []
    if models and providers and len(models) not in (1, len(providers)):
        raise ConfigError(
            [
                (
                    "models",
                    f"{len(models)} models for {len(providers)} providers",
                    "give one model for all providers, or one per provider",
                )
            ]
        )
    if not providers:
        if not models:
            default = llm.default_provider
            name = llm.providers[default].model
            return _config(llm, configs), [Target(f"{default}/{name}", tuple(llm.chain), name)]
        providers = [llm.default_provider] * len(models)
    for index, spec in enumerate(providers):
        model = models[0] if len(models) == 1 else models[index] if models else None
        if spec in llm.providers:
            base = llm.providers[spec]
            if model is not None and model != base.model:
                key = f"{spec}/{model}"
                configs[key] = base.model_copy(update={"model": model})
            else:
                key = spec
        else:
            _known_kind(spec, llm)
            kind = spec.partition(":")[0]
            key_env = api_key_env or FAMILY_KEYS.get(kind)
            _, base = parse_provider_spec(spec, model=model, api_key_env=key_env)
            key = spec if model is None else f"{spec}/{model}"
            configs.setdefault(key, base)
        label = f"{spec}/{configs[key].model}"
        if any(t.label == label for t in targets):
            raise ConfigError([("providers", f"{label} is given twice", "remove the repeat")])
        targets.append(Target(label, (key,), configs[key].model))
    return _config(llm, configs, default=targets[0].chain[0]), targets


def _known_kind(spec: str, llm: LLMConfig) -> None:
    """Fail, listing the configured names, when ``spec`` is neither a name nor TYPE[:WHERE]."""
    types = provider_types()
    if spec.partition(":")[0] in types:
        return
    known = ", ".join(sorted(llm.providers)) or "(none)"
    raise ConfigError(
        [
            (
                "providers",
                f"{spec!r} is neither a configured provider nor TYPE:WHERE",
                f"use one of {known}, or e.g. openai:http://127.0.0.1:8080/v1 "
                f"(types: {', '.join(types)})",
            )
        ]
    )


def _config(llm: LLMConfig, configs: dict[str, ProviderConfig], default: str = "") -> LLMConfig:
    return LLMConfig(
        providers=configs,
        default_provider=default or llm.default_provider,
        fallback=[] if default else list(llm.fallback),
        retry=llm.retry,
        circuit=llm.circuit,
    )
