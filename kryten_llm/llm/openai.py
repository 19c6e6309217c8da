"""The OpenAI-compatible provider: OpenAI, OpenRouter, LM Studio, Ollama, llama.cpp, vLLM.

One POST to ``<base_url>/chat/completions`` over the service's shared aiohttp session. Every
failure is classified here, once, into the :mod:`kryten_llm.errors` tree, so the manager can tell
"try again or elsewhere" (timeouts, refused connections, 5xx, 429 with its ``Retry-After``,
unusable bodies) from "someone must fix something" (401/403, 400/404/422, 402 or an exhausted
credit). The API key never appears in an error or a log line.
"""

from __future__ import annotations

import email.utils
import json
import time
from typing import TYPE_CHECKING, Any, ClassVar

import aiohttp

from kryten_llm.errors import (
    AuthFailed,
    BadRequest,
    ProviderError,
    ProviderUnavailable,
    QuotaExhausted,
    RateLimited,
)
from kryten_llm.llm.base import Completion, CompletionRequest, Usage, register
from kryten_llm.llm.http import request_json

if TYPE_CHECKING:
    from kryten_llm.config import ProviderConfig

# Phrases by which servers report an exhausted balance on statuses other than 402.
_QUOTA_WORDS = ("insufficient_quota", "credit", "quota", "usage limit", "billing")


@register("openai")
class OpenAIProvider:
    """Chat completions from any server that speaks the OpenAI API."""

    type_name: ClassVar[str] = "openai"

    def __init__(self, name: str, config: ProviderConfig, session: aiohttp.ClientSession) -> None:
        self.name = name
        self.model = config.model
        self._config = config
        self._session = session
        self._url = config.base_url.rstrip("/") + "/chat/completions"
        self._models_url = config.base_url.rstrip("/") + "/models"

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **self._config.headers}
        key = self._config.resolve_api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    async def complete(self, request: CompletionRequest) -> Completion:
        """Ask the server for one chat completion.

        Raises:
            ProviderError: a classified subclass; see the module docstring.
        """
        cfg = self._config
        body = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens or cfg.max_tokens,
            "temperature": cfg.temperature if request.temperature is None else request.temperature,
            "stream": False,
        }
        budget = request.timeout_seconds or cfg.timeout_seconds
        started = time.monotonic()
        data = await self._call("POST", self._url, budget, json=body)
        latency = (time.monotonic() - started) * 1000
        text = _content(data)
        if text is None:
            raise ProviderUnavailable(
                self.name, "malformed response: no choices[0].message.content"
            )
        usage = data.get("usage")
        return Completion(
            text=text,
            provider=self.name,
            model=str(data.get("model") or self.model),
            latency_ms=latency,
            usage=(
                Usage(
                    prompt_tokens=int(usage.get("prompt_tokens") or 0),
                    completion_tokens=int(usage.get("completion_tokens") or 0),
                )
                if isinstance(usage, dict)
                else None
            ),
        )

    async def probe(self, timeout_seconds: float) -> str:
        """Check the server answers and, for ``model: "auto"``, take the model it serves.

        Returns:
            A short description for logs and ``providers check``.

        Raises:
            ProviderError: the server is unreachable, refuses the key, or serves no model.
        """
        models = await self.list_models(timeout_seconds)
        if self._config.model == "auto":
            if not models:
                raise ProviderUnavailable(self.name, "model is auto but the server lists none")
            self.model = models[0]
            return f"model auto -> {self.model}"
        listed = "listed" if self.model in models else "not listed (may still work)"
        return f"{len(models)} models, {self.model} {listed}"

    async def list_models(self, timeout_seconds: float | None = None) -> list[str]:
        """The model ids the server offers (``GET /models``)."""
        data = await self._call(
            "GET", self._models_url, timeout_seconds or self._config.timeout_seconds
        )
        models = data.get("data")
        if not isinstance(models, list):
            raise ProviderUnavailable(self.name, "malformed response: no data list")
        return [str(m["id"]) for m in models if isinstance(m, dict) and "id" in m]

    async def _call(
        self, method: str, url: str, budget: float, *, json: Any = None
    ) -> dict[str, Any]:
        return await request_json(
            self._session,
            self.name,
            method,
            url,
            headers=self._headers(),
            budget=budget,
            classify=self._http_error,
            body=json,
        )

    def _http_error(self, status: int, raw: bytes, headers: Any) -> ProviderError:
        message = _error_message(raw)
        lowered = message.lower()
        if status == 402 or (status in (400, 403, 429) and any(w in lowered for w in _QUOTA_WORDS)):
            return QuotaExhausted(self.name, f"out of credit ({status}): {message}", status=status)
        if status == 429:
            return RateLimited(
                self.name,
                f"rate limited: {message}",
                retry_after=parse_retry_after(headers.get("Retry-After")),
            )
        if status in (401, 403):
            fix = (
                f"set {self._config.api_key_env}"
                if self._config.api_key_env
                else f"set KRYTEN_LLM_LLM__PROVIDERS__{self.name.upper()}__API_KEY or api_key_env"
            )
            return AuthFailed(self.name, f"authentication failed ({status}): {fix}", status=status)
        if status in (400, 404, 422):
            return BadRequest(self.name, f"request refused ({status}): {message}", status=status)
        return ProviderUnavailable(self.name, f"server error ({status}): {message}", status=status)


def _content(data: dict[str, Any]) -> str | None:
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    message = choices[0].get("message")
    if not isinstance(message, dict):
        return None
    content = message.get("content")
    return content if isinstance(content, str) else None


def _error_message(raw: bytes) -> str:
    try:
        data = json.loads(raw)
    except ValueError:
        return raw[:200].decode("utf-8", "replace").strip()
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        parts = [str(error.get(k)) for k in ("message", "code", "type") if error.get(k)]
        return " / ".join(parts)[:200]
    return str(error or data)[:200]


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date); None if unusable."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)
