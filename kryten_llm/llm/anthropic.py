"""The Anthropic provider: Claude models through the Messages API, natively.

POST ``<base_url>/messages`` with ``x-api-key`` and ``anthropic-version`` headers. The system
prompt travels in the top-level ``system`` field, and turns must alternate user/assistant, so
consecutive turns of one role are merged. Statuses, timeouts and secrets are classified by the
one ladder of :mod:`kryten_llm.llm.http`, as for the OpenAI provider: 429 with ``retry-after``
is RateLimited, 529 "overloaded" and 5xx are retryable, 401/403 AuthFailed, 400/404/413/422
BadRequest, a "credit balance is too low" error QuotaExhausted. A message without text blocks
is returned with empty text; the manager treats it as an unusable answer.

:meth:`~AnthropicProvider.stream` asks with ``stream: true`` and reads the Messages API's
server-sent events: ``message_start`` (model, prompt tokens), ``content_block_delta`` with a
``text_delta`` (the text), ``message_delta`` (reply tokens), ``message_stop`` (the end). An
``error`` event (``overloaded_error``...) or a stream that ends before ``message_stop`` is
ProviderUnavailable.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any, ClassVar

import aiohttp

from kryten_llm.errors import ProviderUnavailable
from kryten_llm.llm.base import Chunk, Completion, CompletionRequest, Usage, register
from kryten_llm.llm.http import error_message, json_object, request_json, server_events

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
        self.streams = config.stream
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
        started = time.monotonic()
        data = await self._post(self._request_body(request), self._budget(request))
        text, model, usage = self._answer(data)
        return Completion(
            text=text,
            provider=self.name,
            model=model,
            latency_ms=(time.monotonic() - started) * 1000,
            usage=usage,
        )

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[Chunk, None]:
        """Ask for one message as server-sent events; see the module docstring.

        Raises:
            ProviderError: classified as for :meth:`complete`; an ``error`` event or a cut
                stream is ProviderUnavailable.
        """
        body = {**self._request_body(request), "stream": True}
        prompt_tokens = 0
        events = server_events(
            self._session,
            self.name,
            self._url,
            config=self._config,
            headers=self._headers(),
            budget=self._budget(request),
            body=body,
        )
        async for event in events:
            if event.event == "json":  # the server did not stream
                text, model, usage = self._answer(json_object(self.name, event.data))
                yield Chunk(text, model, usage, whole=True)
                return
            data = json_object(self.name, event.data)
            kind = data.get("type", event.event)
            if kind == "error":
                said = error_message(event.data.encode())
                raise ProviderUnavailable(self.name, f"error in the stream: {said}")
            if kind == "message_start":
                start = data.get("message")
                start = start if isinstance(start, dict) else {}
                prompt_tokens = _tokens(start.get("usage"), "input_tokens")
                named = start.get("model")
                yield Chunk(model=named if isinstance(named, str) and named else None)
            elif kind == "content_block_delta":
                delta = data.get("delta")
                if isinstance(delta, dict) and delta.get("type") == "text_delta":
                    piece = delta.get("text")
                    yield Chunk(piece if isinstance(piece, str) else "")
            elif kind == "message_delta":
                output = _tokens(data.get("usage"), "output_tokens")
                yield Chunk(usage=Usage(prompt_tokens, output))
            elif kind == "message_stop":
                return
        raise ProviderUnavailable(self.name, "the stream ended before message_stop")

    def _budget(self, request: CompletionRequest) -> float:
        return request.timeout_seconds or self._config.timeout_seconds

    def _request_body(self, request: CompletionRequest) -> dict[str, Any]:
        """The Messages API body: the system prompt apart, turns of one role merged."""
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
        return body

    def _answer(self, data: dict[str, Any]) -> tuple[str, str, Usage | None]:
        """The text, model and usage of a whole message.

        Raises:
            ProviderUnavailable: it has no ``content`` list.
        """
        content = data.get("content")
        if not isinstance(content, list):
            raise ProviderUnavailable(self.name, "malformed response: no content list")
        text = "".join(
            block.get("text", "")
            for block in content
            if isinstance(block, dict) and block.get("type") == "text"
        )
        usage = data.get("usage")
        return (
            text,
            str(data.get("model") or self.model),
            Usage(_tokens(usage, "input_tokens"), _tokens(usage, "output_tokens"))
            if isinstance(usage, dict)
            else None,
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


def _tokens(usage: object, key: str) -> int:
    """A token count of a ``usage`` object; 0 when absent or odd."""
    value = usage.get(key) if isinstance(usage, dict) else None
    return value if isinstance(value, int) and value >= 0 else 0
