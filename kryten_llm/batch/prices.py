"""Known prices of common hosted models, so ``--estimate-cost`` says something useful.

A small dated table, not a price service: vendors change prices, so the table says when it was
written (:data:`PRICES_AS_OF`), the estimate prints that date, and the config's
``batch.prices`` adds models or overrides any of them. A provider's own
``price_input_per_million`` / ``price_output_per_million`` win over both. Names are matched
without a vendor prefix (``openai/gpt-4o-mini`` on OpenRouter is ``gpt-4o-mini``) and by the
longest known name a dated model id starts with (``gpt-4o-mini-2024-07-18``).
"""

from __future__ import annotations

from collections.abc import Mapping

from kryten_llm.config import LLMConfig, ModelPrice

PRICES_AS_OF = "2025-05"
# USD per million tokens (input, output), from the vendors' published price lists.
KNOWN_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-opus-4": (15.00, 75.00),
    "claude-3-haiku": (0.25, 1.25),
    "gemini-2.0-flash": (0.10, 0.40),
    "gemini-1.5-flash": (0.075, 0.30),
    "gemini-1.5-pro": (1.25, 5.00),
}


def price_of(model: str, overrides: Mapping[str, ModelPrice]) -> tuple[float, float] | None:
    """(input, output) USD per million tokens of ``model``, or None when unknown.

    Args:
        model: the model name as sent to the provider.
        overrides: the config's ``batch.prices`` (checked first, by the same rules).
    """
    table = dict(KNOWN_PRICES)
    table.update({name: (p.input, p.output) for name, p in overrides.items()})
    for name in (model, model.rpartition("/")[2]):
        if name in table:
            return table[name]
        starts = [known for known in table if name.startswith(known + "-")]
        if starts:
            return table[max(starts, key=len)]
    return None


def with_prices(llm: LLMConfig, overrides: Mapping[str, ModelPrice]) -> LLMConfig:
    """``llm`` with known prices filled in for providers that have none of their own.

    Args:
        llm: the providers of a batch.
        overrides: the config's ``batch.prices``.
    """
    providers = dict(llm.providers)
    for key, config in llm.providers.items():
        if config.price_input_per_million or config.price_output_per_million:
            continue
        price = price_of(config.model, overrides)
        if price is not None:
            providers[key] = config.model_copy(
                update={"price_input_per_million": price[0], "price_output_per_million": price[1]}
            )
    return llm.model_copy(update={"providers": providers})
