"""The Anthropic provider: Claude models through the Messages API, natively.

POST ``<base_url>/messages`` with ``x-api-key`` and ``anthropic-version`` headers. The system
prompt travels in the top-level ``system`` field, and turns must alternate user/assistant, so
consecutive turns of one role are merged. Statuses, timeouts and secrets are classified by the
one ladder of :mod:`kryten_llm.llm.http`, as for the OpenAI provider: 429 with ``retry-after``
is RateLimited, 529 "overloaded" and 5xx are retryable, 401/403 AuthFailed, 400/404/413/422
BadRequest, a "credit balance is too low" error QuotaExhausted. A message without text blocks
is returned with empty text; the manager treats it as an unusable answer. What it shares with
the OpenAI provider (timing, the stream's opening, a server that does not stream, token counts)
is :class:`~kryten_llm.llm.api.ApiProvider`.

:meth:`~AnthropicProvider.stream` asks with ``stream: true`` and reads the Messages API's
server-sent events: ``message_start`` (model, prompt tokens), ``content_block_delta`` with a
``text_delta`` (the text), ``message_delta`` (reply tokens), ``message_stop`` (the end). An
``error`` event (``overloaded_error``...) or a stream that ends before ``message_stop`` is
ProviderUnavailable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import aiohttp

from kryten_llm.errors import ProviderUnavailable
from kryten_llm.llm.api import ApiProvider, token_count, usage_of
from kryten_llm.llm.base import Chunk, CompletionRequest, Usage, register
from kryten_llm.llm.http import error_message, json_object

if TYPE_CHECKING:
    from kryten_llm.config import ProviderConfig
    from kryten_llm.llm.http import ServerEvent

API_VERSION = "2023-06-01"


@register("anthropic")
class AnthropicProvider(ApiProvider):
    """Chat completions from the Anthropic Messages API."""

    type_name: ClassVar[str] = "anthropic"

    def __init__(self, name: str, config: ProviderConfig, session: aiohttp.ClientSession) -> None:
        super().__init__(name, config, session, config.base_url.rstrip("/") + "/messages")

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
        body = self._body(request, [{"role": "user", "content": "ping"}])
        await self._call("POST", self._url, timeout_seconds, body)
        return f"{self.model} answered a one-token probe"

    def _request_body(self, request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
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
        if stream:
            body["stream"] = True
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
        usage = usage_of(data.get("usage"), "input_tokens", "output_tokens")
        return text, str(data.get("model") or self.model), usage

    def _reader(self) -> _EventReader:
        return _EventReader(self.name)

    def _body(self, request: CompletionRequest, turns: list[dict[str, Any]]) -> dict[str, Any]:
        cfg = self._config
        return {
            "model": self.model,
            "max_tokens": request.max_tokens or cfg.max_tokens,
            "temperature": cfg.temperature if request.temperature is None else request.temperature,
            "messages": turns,
        }


class _EventReader:
    """Reads the events of one streamed message (see the module docstring)."""

    cut = "the stream ended before message_stop"

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._prompt_tokens = 0
        self.finished = False
        self.closed = False

    def read(self, event: ServerEvent) -> Chunk | None:
        data = json_object(self._provider, event.data)
        kind = data.get("type", event.event)
        if kind == "error":
            said = error_message(event.data.encode())
            raise ProviderUnavailable(self._provider, f"error in the stream: {said}")
        if kind == "message_start":
            start = data.get("message")
            start = start if isinstance(start, dict) else {}
            self._prompt_tokens = token_count(start.get("usage"), "input_tokens")
            named = start.get("model")
            return Chunk(model=named if isinstance(named, str) and named else None)
        if kind == "content_block_delta":
            delta = data.get("delta")
            if isinstance(delta, dict) and delta.get("type") == "text_delta":
                piece = delta.get("text")
                return Chunk(piece if isinstance(piece, str) else "")
        elif kind == "message_delta":
            output = token_count(data.get("usage"), "output_tokens")
            return Chunk(usage=Usage(self._prompt_tokens, output))
        elif kind == "message_stop":
            self.finished = self.closed = True
        return None
