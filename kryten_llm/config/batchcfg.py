"""The ``batch`` section: defaults of ``kryten-llm batch`` that flags override, and prices.

Batch users keep their usual concurrency, rate limit, model and output format in the config
instead of repeating flags (as ``llm`` users keep per-model defaults). Each key is named after
its flag (``--rate-limit`` -> ``rate_limit``); a flag given on the command line (or a keyword
given to the Python API) wins over the key, and a key left unset keeps the built-in default.
``rate_limits`` paces single models on top of ``rate_limit``; ``prices`` adds to or overrides
the small dated table of hosted models' prices that ``--estimate-cost`` and the per-model cost
figures use (:mod:`kryten_llm.batch.prices`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from kryten_llm.config.base import Section


class ModelPrice(Section):
    """What one model costs, in USD per million tokens."""

    input: float = Field(0.0, ge=0, description="USD per 1M prompt tokens.")
    output: float = Field(0.0, ge=0, description="USD per 1M answer tokens.")


class BatchConfig(Section):
    """Defaults of ``kryten-llm batch`` (every key is a flag's name; flags win)."""

    provider: list[str] = Field(
        default_factory=list,
        description="--provider: configured names or inline specs (empty: the default chain).",
    )
    model: list[str] = Field(
        default_factory=list,
        description='--model: one for all providers or one per provider; "auto" or "all" '
        "ask the server which models it has loaded.",
    )
    concurrency: int | None = Field(None, ge=1, le=1024, description="--concurrency (8).")
    rate_limit: float | None = Field(
        None, gt=0, description="--rate-limit: requests per minute for the whole run."
    )
    format: Literal["csv", "json", "jsonl"] | None = Field(
        None, description="--format of -o when its extension does not say."
    )
    timeout: float | None = Field(None, gt=0, description="--timeout: seconds per item (600).")
    max_tokens: int | None = Field(None, ge=1, description="--max-tokens of each answer.")
    temperature: float | None = Field(None, ge=0, le=2, description="--temperature.")
    api_key_env: str | None = Field(
        None, description="--api-key-env: the key variable of inline provider specs."
    )
    rate_limits: dict[str, float] = Field(
        default_factory=dict,
        description="Requests per minute per model name, on top of rate_limit.",
    )
    prices: dict[str, ModelPrice] = Field(
        default_factory=dict,
        description="USD per 1M tokens by model name; adds to or overrides the built-in table.",
    )

    @field_validator("rate_limits")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        bad = sorted(name for name, rate in value.items() if rate <= 0)
        if bad:
            raise ValueError(f"rate_limits of {bad} must be positive requests per minute")
        return value

    @field_validator("provider", "model", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value
