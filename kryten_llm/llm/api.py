"""What the two HTTP API providers (OpenAI-compatible and Anthropic) do alike, written once.

Both send one JSON body to one URL over the service's shared session and read back either one
JSON answer (:meth:`ApiProvider.complete`) or a stream of server-sent events
(:meth:`ApiProvider.stream`); both time the call, fall back to the config's timeout, read a
server that ignored ``stream: true`` as one whole answer, and count tokens from a ``usage``
object that may be missing or odd. :mod:`kryten_llm.llm.http` owns the wire (statuses,
timeouts, secrets); this module owns the provider's side of it. A provider keeps only what
differs: its headers, its request body, the shape of a whole answer and how its stream's
events read (a :class:`StreamReader`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from kryten_llm.errors import ProviderUnavailable
from kryten_llm.llm.base import Chunk, Completion, CompletionRequest, Usage
from kryten_llm.llm.http import json_object, request_json, server_events

if TYPE_CHECKING:
    import aiohttp

    from kryten_llm.config import ProviderConfig
    from kryten_llm.llm.http import ServerEvent


class StreamReader(Protocol):
    """Reads one stream's events in order; one reader per stream (it may keep state).

    Attributes:
        finished: the answer is complete: the stream may end now without being cut.
        closed: nothing more is to be read (the provider's end-of-stream event came).
        cut: why a stream that ends before ``finished`` was cut (ProviderUnavailable's text).
    """

    finished: bool
    closed: bool
    cut: str

    def read(self, event: ServerEvent) -> Chunk | None:
        """The chunk ``event`` carries, or None when it carries nothing to hand on.

        Raises:
            ProviderError: the event is malformed or reports an error.
        """
        ...


class ApiProvider:
    """The common part of a provider behind an HTTP API (see the module docstring).

    Args:
        name: the provider's key in ``llm.providers``; names it in errors and completions.
        config: its config slice (``base_url``, ``model``, key, headers, budget, sampling).
        session: the service's shared session; never created or closed here.
        url: where completions are asked for.
    """

    type_name: ClassVar[str]

    def __init__(
        self, name: str, config: ProviderConfig, session: aiohttp.ClientSession, url: str
    ) -> None:
        self.name = name
        self.model = config.model
        self.streams = config.stream
        self._config = config
        self._session = session
        self._url = url

    # -- what each provider says for itself -----------------------------------------------

    def _headers(self) -> dict[str, str]:
        raise NotImplementedError

    def _request_body(self, request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        raise NotImplementedError

    def _answer(self, data: dict[str, Any]) -> tuple[str, str, Usage | None]:
        """The text, model and usage of a whole answer.

        Raises:
            ProviderError: it has no answer in it.
        """
        raise NotImplementedError

    def _reader(self) -> StreamReader:
        raise NotImplementedError

    # -- written once -----------------------------------------------------------------------

    async def complete(self, request: CompletionRequest) -> Completion:
        """Ask for one whole answer.

        Args:
            request: the messages; its ``None`` fields fall back to the config.

        Returns:
            The text, the model that answered (the config's when the server does not say),
            the wall time of the call and the token usage when the server reported it.

        Raises:
            ProviderError: a classified subclass (see :mod:`kryten_llm.llm.http`), or the
                provider's own when the answer has no text.
        """
        started = time.monotonic()
        body = self._request_body(request, stream=False)
        data = await self._call("POST", self._url, self._budget(request), body)
        text, model, usage = self._answer(data)
        return Completion(
            text=text,
            provider=self.name,
            model=model,
            latency_ms=(time.monotonic() - started) * 1000,
            usage=usage,
        )

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[Chunk, None]:
        """Ask for the answer as server-sent events, read by the provider's reader.

        Args:
            request: the messages; its ``None`` fields fall back to the config.

        Yields:
            The text as it is written; the model and usage when the server reports them. A
            server that did not stream gives one chunk with ``whole`` set.

        Raises:
            ProviderError: classified as for :meth:`complete`; a cut stream or an error in it
                is ProviderUnavailable.
        """
        reader = self._reader()
        events = server_events(
            self._session,
            self.name,
            self._url,
            config=self._config,
            headers=self._headers(),
            budget=self._budget(request),
            body=self._request_body(request, stream=True),
        )
        async for event in events:
            if event.event == "json":  # the server did not stream
                text, model, usage = self._answer(json_object(self.name, event.data))
                yield Chunk(text, model, usage, whole=True)
                return
            chunk = reader.read(event)
            if chunk is not None:
                yield chunk
            if reader.closed:
                return
        if not reader.finished:
            raise ProviderUnavailable(self.name, reader.cut)

    def _budget(self, request: CompletionRequest) -> float:
        return request.timeout_seconds or self._config.timeout_seconds

    async def _call(self, method: str, url: str, budget: float, body: Any = None) -> dict[str, Any]:
        return await request_json(
            self._session,
            self.name,
            method,
            url,
            config=self._config,
            headers=self._headers(),
            budget=budget,
            body=body,
        )


def token_count(usage: object, key: str) -> int:
    """A token count of a ``usage`` object; 0 when absent or odd (never fails a reply)."""
    value = usage.get(key) if isinstance(usage, dict) else None
    return value if isinstance(value, int) and value >= 0 else 0


def usage_of(usage: object, prompt_key: str, completion_key: str) -> Usage | None:
    """The token counts of a ``usage`` object under the API's own key names; None without one."""
    if not isinstance(usage, dict):
        return None
    return Usage(token_count(usage, prompt_key), token_count(usage, completion_key))
