"""The OpenAI-compatible provider: OpenAI, OpenRouter, LM Studio, Ollama, llama.cpp, vLLM.

It sits at the provider seam of the reply pipeline (prompt builder -> LLM manager -> *provider*
-> validator/formatter): one POST to ``<base_url>/chat/completions`` over the service's shared
aiohttp session, with ``stream: false`` for :meth:`~OpenAIProvider.complete` and
``stream: true`` for :meth:`~OpenAIProvider.stream` (server-sent ``data:`` chunks of
``choices[0].delta.content``, usage asked for with ``stream_options``, ended by ``[DONE]``).
Statuses, timeouts, transport failures, bodies that are not JSON and secrets in error texts are
handled once for every API provider in :mod:`kryten_llm.llm.http` (the table of what is raised
is there); timing, the stream's opening and token counts in :mod:`kryten_llm.llm.api`.

A stream that ends without ``[DONE]`` or a ``finish_reason`` was cut: ProviderUnavailable, as is
an ``error`` object in the stream. A server that ignores ``stream: true`` and answers one JSON
completion is read as that completion.

What is left here is the OpenAI shape: a 200 without ``choices`` (or with an empty list, or a
``null`` content, as a content filter or a tool call gives) has no answer and raises
:class:`~kryten_llm.errors.UnusableAnswer`; an empty or blank string is returned as it is, and
the manager treats it as unusable for every provider alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import aiohttp

from kryten_llm.errors import ProviderUnavailable, UnusableAnswer
from kryten_llm.llm.api import ApiProvider, usage_of
from kryten_llm.llm.base import Chunk, CompletionRequest, Usage, register
from kryten_llm.llm.http import error_message, json_object

if TYPE_CHECKING:
    from kryten_llm.config import ProviderConfig
    from kryten_llm.llm.http import ServerEvent


@register("openai")
class OpenAIProvider(ApiProvider):
    """Chat completions from any server that speaks the OpenAI API.

    Args:
        name: the provider's key in ``llm.providers``; names it in errors and completions.
        config: its config slice (``base_url``, ``model``, key, headers, budget, sampling).
        session: the service's shared session; never created or closed here.
    """

    type_name: ClassVar[str] = "openai"

    def __init__(self, name: str, config: ProviderConfig, session: aiohttp.ClientSession) -> None:
        root = config.base_url.rstrip("/")
        super().__init__(name, config, session, root + "/chat/completions")
        self._models_url = root + "/models"

    def _request_body(self, request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        cfg = self._config
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens or cfg.max_tokens,
            "temperature": cfg.temperature if request.temperature is None else request.temperature,
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def _answer(self, data: dict[str, Any]) -> tuple[str, str, Usage | None]:
        """The text, model and usage of a whole completion.

        Raises:
            UnusableAnswer: it has no ``choices[0].message.content`` string.
        """
        text = _content(data)
        if text is None:
            raise UnusableAnswer(self.name, "no answer: no choices[0].message.content")
        return text, _str(data.get("model")) or self.model, _usage(data.get("usage"))

    def _reader(self) -> _ChunkReader:
        return _ChunkReader(self.name)

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


def _first_choice(data: dict[str, Any]) -> dict[str, Any] | None:
    """``choices[0]`` when it is an object, else None."""
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    return choices[0]


def _str(value: object) -> str | None:
    """``value`` when it is a non-empty string (a model name), else None."""
    return str(value) if isinstance(value, str) and value else None


def _content(data: dict[str, Any]) -> str | None:
    """``choices[0].message.content`` when it is a string (possibly empty), else None."""
    choice = _first_choice(data)
    message = choice.get("message") if choice is not None else None
    if not isinstance(message, dict):
        return None
    content = message.get("content")
    return content if isinstance(content, str) else None


def _usage(usage: object) -> Usage | None:
    """Token counts from a ``usage`` object; odd values count as 0 rather than failing a reply."""
    return usage_of(usage, "prompt_tokens", "completion_tokens")


class _ChunkReader:
    """Reads the ``data:`` chunks of one streamed completion (see the module docstring)."""

    cut = "the stream ended before the answer did"

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self.finished = False
        self.closed = False

    def read(self, event: ServerEvent) -> Chunk | None:
        if event.data.strip() == "[DONE]":
            self.finished = self.closed = True
            return None
        data = json_object(self._provider, event.data)
        if "error" in data:
            message = error_message(event.data.encode())
            raise ProviderUnavailable(self._provider, f"error in the stream: {message}")
        choice = _first_choice(data)
        delta = choice.get("delta") if choice is not None else None
        content = delta.get("content") if isinstance(delta, dict) else None
        self.finished = self.finished or bool(choice and choice.get("finish_reason"))
        return Chunk(
            content if isinstance(content, str) else "",
            _str(data.get("model")),
            _usage(data.get("usage")),
        )
