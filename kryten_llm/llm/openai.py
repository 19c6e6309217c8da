"""The OpenAI-compatible provider: OpenAI, OpenRouter, LM Studio, Ollama, llama.cpp, vLLM.

It sits at the provider seam of the reply pipeline (prompt builder -> LLM manager -> *provider*
-> validator/formatter): one POST to ``<base_url>/chat/completions`` over the service's shared
aiohttp session, with ``stream: false``. Every failure is classified here, once, into the
:mod:`kryten_llm.errors` tree, so the manager can tell "try again or elsewhere" from "someone
must fix something":

==========================================  =======================  =========
What happened                               Raised                   Retryable
==========================================  =======================  =========
no answer within the budget (or 408)        ProviderTimeout          yes
refused, reset, DNS failure                 ProviderUnavailable      yes
5xx (``status`` kept)                       ProviderUnavailable      yes
2xx that is not JSON / has no content       ProviderUnavailable      yes
429                                         RateLimited(retry_after) yes
402, or 400/403/429 about credit (below)    QuotaExhausted           no
401, 403                                    AuthFailed               no
400, 404, 422 and any other 4xx             BadRequest               no
==========================================  =======================  =========

The credit heuristic is the one place where text is matched: servers report an exhausted
balance on statuses other than 402 (OpenAI: 429 ``insufficient_quota``; the Anthropic
API: 400 "credit balance is too low"), so a 400/403/429 whose error message or code mentions
credit, quota or a usage limit is QuotaExhausted. A 429 that
carries ``Retry-After`` stays RateLimited whatever it says: the server is telling us when to
come back, which an empty account cannot do.

An empty string as content is a valid completion and is returned; the validator decides. The
API key never appears in an error or a log line, even when a server echoes it back.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import time
from collections.abc import Mapping
from datetime import UTC
from typing import TYPE_CHECKING, Any, ClassVar

import aiohttp

from kryten_llm.errors import (
    AuthFailed,
    BadRequest,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    QuotaExhausted,
    RateLimited,
)
from kryten_llm.llm.base import Completion, CompletionRequest, Usage, register
from kryten_llm.llm.http import request_json

if TYPE_CHECKING:
    from kryten_llm.config import ProviderConfig

# How servers say "the account is empty" on statuses other than 402 (see the module docstring).
_QUOTA = re.compile(r"credit|quota|usage[ _-]?limit", re.IGNORECASE)
_QUOTA_STATUSES = frozenset({400, 403, 429})
_MESSAGE_LIMIT = 200


@register("openai")
class OpenAIProvider:
    """Chat completions from any server that speaks the OpenAI API.

    Args:
        name: the provider's key in ``llm.providers``; names it in errors and completions.
        config: its config slice (``base_url``, ``model``, key, headers, budget, sampling).
        session: the service's shared session; never created or closed here.
    """

    type_name: ClassVar[str] = "openai"

    def __init__(self, name: str, config: ProviderConfig, session: aiohttp.ClientSession) -> None:
        self.name = name
        self.model = config.model
        self._config = config
        self._session = session
        root = config.base_url.rstrip("/")
        self._url = root + "/chat/completions"
        self._models_url = root + "/models"

    async def complete(self, request: CompletionRequest) -> Completion:
        """Ask the server for one chat completion.

        Args:
            request: the messages; its ``None`` fields fall back to the config.

        Returns:
            The text, the model that answered (the config's when the server does not say),
            the wall time of the call and the token usage when the server reported it.

        Raises:
            ProviderError: a classified subclass; see the table in the module docstring.
        """
        cfg = self._config
        body = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens or cfg.max_tokens,
            "temperature": cfg.temperature if request.temperature is None else request.temperature,
            "stream": False,
        }
        started = time.monotonic()
        data = await self._call(
            "POST", self._url, request.timeout_seconds or cfg.timeout_seconds, body
        )
        latency_ms = (time.monotonic() - started) * 1000
        text = _content(data)
        if text is None:
            raise ProviderUnavailable(
                self.name, "malformed response: no choices[0].message.content"
            )
        return Completion(
            text=text,
            provider=self.name,
            model=str(data.get("model") or self.model),
            latency_ms=latency_ms,
            usage=_usage(data.get("usage")),
        )

    async def probe(self, timeout_seconds: float) -> str:
        """Check the server answers and, for ``model: "auto"``, take the model it serves.

        Args:
            timeout_seconds: the budget of the ``GET /models`` call.

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
        """The model ids the server offers (``GET /models``).

        Args:
            timeout_seconds: the budget; the config's ``timeout_seconds`` when ``None``.

        Returns:
            The ids, in the server's order.

        Raises:
            ProviderError: classified as for :meth:`complete`; a body without a ``data``
                list is ProviderUnavailable.
        """
        data = await self._call(
            "GET", self._models_url, timeout_seconds or self._config.timeout_seconds
        )
        models = data.get("data")
        if not isinstance(models, list):
            raise ProviderUnavailable(self.name, "malformed response: no data list")
        return [str(m["id"]) for m in models if isinstance(m, dict) and "id" in m]

    def _headers(self) -> dict[str, str]:
        headers = dict(self._config.headers)
        key = self._config.resolve_api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    async def _call(self, method: str, url: str, budget: float, body: Any = None) -> dict[str, Any]:
        return await request_json(
            self._session,
            self.name,
            method,
            url,
            headers=self._headers(),
            budget=budget,
            classify=self._http_error,
            body=body,
        )

    def _http_error(self, status: int, raw: bytes, headers: Mapping[str, str]) -> ProviderError:
        """Classify an HTTP status >= 400 (the table in the module docstring)."""
        message = self._redact(_error_message(raw))
        retry_after = headers.get("Retry-After")
        if status == 402 or (
            status in _QUOTA_STATUSES
            and _QUOTA.search(message)
            and not (status == 429 and retry_after)
        ):
            return QuotaExhausted(self.name, f"out of credit ({status}): {message}", status=status)
        if status == 429:
            return RateLimited(
                self.name,
                f"rate limited: {message}",
                retry_after=parse_retry_after(retry_after),
            )
        if status in (401, 403):
            # The server's text is left out: some echo the (masked) key back.
            fix = (
                f"set {self._config.api_key_env}"
                if self._config.api_key_env
                else f"set KRYTEN_LLM_LLM__PROVIDERS__{self.name.upper()}__API_KEY or api_key_env"
            )
            return AuthFailed(self.name, f"authentication failed ({status}): {fix}", status=status)
        if status == 408:
            return ProviderTimeout(self.name, f"server timed out (408): {message}", status=status)
        if 400 <= status < 500:
            return BadRequest(self.name, f"request refused ({status}): {message}", status=status)
        return ProviderUnavailable(self.name, f"server error ({status}): {message}", status=status)

    def _redact(self, text: str) -> str:
        key = self._config.resolve_api_key()
        return text.replace(key, "[api key]") if key else text


def _content(data: dict[str, Any]) -> str | None:
    """``choices[0].message.content`` when it is a string (possibly empty), else None."""
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    message = choices[0].get("message")
    if not isinstance(message, dict):
        return None
    content = message.get("content")
    return content if isinstance(content, str) else None


def _usage(usage: Any) -> Usage | None:
    """Token counts from a ``usage`` object; odd values count as 0 rather than failing a reply."""
    if not isinstance(usage, dict):
        return None

    def count(key: str) -> int:
        value = usage.get(key)
        return value if isinstance(value, int) and value >= 0 else 0

    return Usage(prompt_tokens=count("prompt_tokens"), completion_tokens=count("completion_tokens"))


def _error_message(raw: bytes) -> str:
    """The server's explanation, at most 200 characters, from the usual error shapes.

    OpenAI ``{"error": {"message", "code", "type"}}``, ``{"error": "text"}``, vLLM
    ``{"message": ...}``, FastAPI ``{"detail": ...}``, or the body itself when it is not JSON.
    """
    try:
        data = json.loads(raw)
    except ValueError:
        return raw[:_MESSAGE_LIMIT].decode("utf-8", "replace").strip()
    if not isinstance(data, dict):
        return str(data)[:_MESSAGE_LIMIT]
    error = data.get("error")
    if isinstance(error, dict):
        parts = [str(error[k]) for k in ("message", "code", "type") if error.get(k)]
        text = " / ".join(parts)
    else:
        text = str(error or data.get("message") or data.get("detail") or data)
    return text[:_MESSAGE_LIMIT]


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header.

    Args:
        value: delta-seconds (``"7"``, ``"0.5"``) or an HTTP-date; a date in the past gives 0.

    Returns:
        The seconds, or None when the header is absent or unusable.
    """
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": RFC 9110 dates are GMT anyway
        when = when.replace(tzinfo=UTC)
    return max(when.timestamp() - time.time(), 0.0)
