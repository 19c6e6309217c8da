"""The Anthropic provider: Claude models through the Messages API, natively.

POST ``<base_url>/messages`` with ``x-api-key`` and ``anthropic-version`` headers. The system
prompt travels in the top-level ``system`` field, and turns must alternate user/assistant, so
consecutive turns of one role are merged. Statuses, timeouts and secrets are classified by the
one ladder of :mod:`kryten_llm.llm.http`, as for the OpenAI provider: 429 with ``retry-after``
is RateLimited, 529 "overloaded" and 5xx are retryable, 401/403 AuthFailed, 400/404/413/422
BadRequest, a "credit balance is too low" error QuotaExhausted. A message without text blocks
is returned with empty text; the manager treats it as an unusable answer.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

import aiohttp

from kryten_llm.errors import ProviderUnavailable
from kryten_llm.llm.base import Completion, CompletionRequest, Usage, register
from kryten_llm.llm.http import request_json

if TYPE_CHECKING:
    from kryten_llm.config import ProviderConfig

API_VERSION = "2023-06-01"


@register("anthropic")
class AnthropicProvider:
    """Chat completions from the Anthropic Messages API."""

    type_name: ClassVar[str] = "anthropic"

    def __init__(self, name: str, config: ProviderConfig, session: aiohttp.ClientSession) -> None:
        self.name = name
        self.model = config.model
        self._config = config
        self._session = session
        self._url = config.base_url.rstrip("/") + "/messages"

    def _headers(self) -> dict[str, str]:
        headers = {
            "content-type": "application/json",
            "anthropic-version": API_VERSION,
            **self._config.headers,
        }
        key = self._config.resolve_api_key()
        if key:
            headers["x-api-key"] = key
        return headers

    async def probe(self, timeout_seconds: float) -> str:
        """A one-token completion: the Messages API has no cheaper authenticated check."""
        request = CompletionRequest(messages=(), max_tokens=1, timeout_seconds=timeout_seconds)
        await self._post(
            self._body(request, [{"role": "user", "content": "ping"}]), timeout_seconds
        )
        return f"{self.model} answered a one-token probe"

    async def complete(self, request: CompletionRequest) -> Completion:
        """Ask for one message.

        Raises:
            ProviderError: a classified subclass; see the module docstring.
        """
        turns: list[dict[str, Any]] = []
        for message in request.messages:
            if message.role == "system":
                continue
            if turns and turns[-1]["role"] == message.role:
                turns[-1]["content"] += "\n\n" + message.content
            else:
                turns.append({"role": message.role, "content": message.content})
        body = self._body(request, turns)
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        if system:
            body["system"] = system
        started = time.monotonic()
        data = await self._post(body, request.timeout_seconds or self._config.timeout_seconds)
        content = data.get("content")
        if not isinstance(content, list):
            raise ProviderUnavailable(self.name, "malformed response: no content list")
        text = "".join(
            block.get("text", "")
            for block in content
            if isinstance(block, dict) and block.get("type") == "text"
        )
        usage = data.get("usage")
        return Completion(
            text=text,
            provider=self.name,
            model=str(data.get("model") or self.model),
            latency_ms=(time.monotonic() - started) * 1000,
            usage=(
                Usage(int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0))
                if isinstance(usage, dict)
                else None
            ),
        )

    def _body(self, request: CompletionRequest, turns: list[dict[str, Any]]) -> dict[str, Any]:
        cfg = self._config
        return {
            "model": self.model,
            "max_tokens": request.max_tokens or cfg.max_tokens,
            "temperature": cfg.temperature if request.temperature is None else request.temperature,
            "messages": turns,
        }

    async def _post(self, body: dict[str, Any], budget: float) -> dict[str, Any]:
        return await request_json(
            self._session,
            self.name,
            "POST",
            self._url,
            config=self._config,
            headers=self._headers(),
            budget=budget,
            body=body,
        )
