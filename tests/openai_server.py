"""A real HTTP server on 127.0.0.1 that speaks the OpenAI chat API, scripted per request.

Provider, manager and service tests point a real ``OpenAIProvider`` at this server instead of
patching internals (STYLE.md practice 12), so what is tested is the request that really went
over the wire and the error classification of real statuses, headers, hangs and slow bodies.

Tests push :class:`Step` values (a reply, an error status, a hang, a slow drip, a malformed
body, a dropped or reset connection, a truncated body, headers echoed back...) and the server
plays them in order, one per ``POST /v1/chat/completions`` (or ``POST /v1/messages``, the
Anthropic path). Once the script is used up every request gets ``default``; with no
``default`` the reply is built from the request by ``responder`` (by default an echo of the
last user message, so integration tests can see what reached the model). ``GET /v1/models``
lists ``models`` unless steps were queued for it with :meth:`ScriptedOpenAIServer.push_models`.
Every request is recorded with its headers, JSON body and monotonic arrival time.

:func:`streamed` answers with server-sent events, OpenAI chunks on ``/v1/chat/completions`` and
Anthropic events on ``/v1/messages``: text pieces with pauses between them, finished properly or
cut off; ``stream_ends`` records when each streamed answer was complete (its last byte written),
``stream_left`` when a client closed the connection during one of a stream's pauses.

    async with ScriptedOpenAIServer(status(429, headers={"Retry-After": "1"}), reply("hi")) as llm:
        config = ProviderConfig(type="openai", base_url=llm.base_url)
        ...
        llm.push(hang(30))           # the next request never gets an answer
        assert llm.completions[0].json["model"] == "default"

Leaving the ``async with`` cancels hung and dripping handlers, so shutdown stays well under a
second whatever the script was doing.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Self

from aiohttp import web

Responder = Callable[[dict[str, Any]], str]
StepKind = Literal[
    "reply",
    "status",
    "raw",
    "hang",
    "drip",
    "disconnect",
    "reset",
    "truncated",
    "echo_headers",
    "stream",
]


@dataclass(frozen=True, slots=True)
class Step:
    """What the server does for one request. Build steps with the factories below."""

    kind: StepKind
    text: str = ""
    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    chunks: int = 0
    model: str | None = "scripted-model"
    usage: Mapping[str, int] | None = None
    pieces: tuple[str | float, ...] = ()
    cut: bool = False


def reply(
    text: str, *, model: str | None = "scripted-model", usage: Mapping[str, int] | None = None
) -> Step:
    """A 200 chat completion whose ``choices[0].message.content`` is ``text``.

    Args:
        text: the content.
        model: the ``model`` field of the answer; ``None`` leaves the field out.
        usage: the ``usage`` object, e.g. ``{"prompt_tokens": 12, "completion_tokens": 3}``.
    """
    return Step("reply", text=text, model=model, usage=usage)


def status(code: int, body: Any = None, headers: Mapping[str, str] | None = None) -> Step:
    """An answer with HTTP status ``code`` and a JSON body.

    Args:
        code: the status, e.g. 429, 500, 401.
        body: the JSON body; by default an OpenAI-style ``{"error": {"message": ...}}``.
        headers: extra response headers, e.g. ``{"Retry-After": "7"}``.
    """
    default = {"error": {"message": f"scripted {code}", "type": "scripted"}}
    return Step(
        "status", status=code, body=default if body is None else body, headers=dict(headers or {})
    )


def raw(body: str, code: int = 200, content_type: str = "application/json") -> Step:
    """A body sent verbatim as ``content_type`` (malformed JSON, odd shapes, hand-made events)."""
    return Step("raw", text=body, status=code, headers={"Content-Type": content_type})


def malformed_json() -> Step:
    """A 200 whose body is not JSON at all (a truncated object)."""
    return raw('{"choices": [')


def empty_choices() -> Step:
    """A 200 completion with an empty ``choices`` list."""
    return raw(json.dumps({"id": "x", "model": "m", "choices": []}))


def null_content() -> Step:
    """A 200 completion whose message content is ``null``."""
    return raw(json.dumps({"choices": [{"message": {"role": "assistant", "content": None}}]}))


def hang(seconds: float = 30.0) -> Step:
    """Accept the request and answer nothing for ``seconds`` (then a 504)."""
    return Step("hang", seconds=seconds)


def drip(chunks: int = 20, interval: float = 0.2, text: str = "ok") -> Step:
    """A valid completion of ``text`` sent in ``chunks`` pieces, ``interval`` seconds apart.

    Each piece arrives well within any per-read timeout, so only a budget on the whole exchange
    stops a drip that lasts ``chunks * interval`` seconds.
    """
    return Step("drip", text=text, chunks=chunks, seconds=interval)


def streamed(
    *pieces: str | float,
    model: str | None = "scripted-model",
    usage: Mapping[str, int] | None = None,
    cut: bool = False,
) -> Step:
    """A streamed answer: each string is one chunk of text, each number a pause in seconds.

    Args:
        pieces: the chunks and pauses, in order.
        model: the ``model`` of every chunk; ``None`` leaves it out.
        usage: sent at the end (OpenAI: a last chunk with ``usage``; Anthropic: the message's).
        cut: close the connection after the pieces instead of finishing the stream.
    """
    return Step("stream", pieces=pieces, model=model, usage=usage, cut=cut)


def disconnect() -> Step:
    """Close the connection without answering (a reset mid-request)."""
    return Step("disconnect")


def reset() -> Step:
    """Abort the connection with a TCP reset (RST) instead of an answer."""
    return Step("reset")


def truncated() -> Step:
    """A 200 that announces a full completion's length, sends half of it and hangs up."""
    return Step("truncated", text="a reply that never arrives whole")


def empty_content(text: str = "") -> Step:
    """A 200 completion whose content is ``text``: empty by default, or only whitespace."""
    return reply(text)


def echo_headers(code: int = 500, extra: str = "") -> Step:
    """An error ``code`` whose message echoes every request header and ``extra`` back.

    Some servers and proxies do that; secrets in them must not leak into our errors.
    """
    return Step("echo_headers", status=code, text=extra)


def echo(body: dict[str, Any]) -> str:
    """The default responder: ``"echo: <last user message>"``."""
    users = [m["content"] for m in body.get("messages", []) if m.get("role") == "user"]
    return f"echo: {users[-1] if users else ''}"


def completion_body(text: str, model: str | None = "scripted-model", usage: Any = None) -> bytes:
    """The JSON of a chat completion answering ``text``."""
    payload: dict[str, Any] = {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
    }
    if model is not None:
        payload["model"] = model
    if usage is not None:
        payload["usage"] = dict(usage)
    return json.dumps(payload).encode()


def closed_port() -> int:
    """A port of 127.0.0.1 that was bound and closed again: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    json: dict[str, Any] | None
    received_at: float  # time.monotonic()


class LocalApi:
    """An OpenAI-compatible HTTP server on a free port of 127.0.0.1 for one test, started and
    stopped with ``async with``; subclasses add their routes in :meth:`routes`."""

    def __init__(self) -> None:
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        """The API root to configure, e.g. ``http://127.0.0.1:40123/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        app = web.Application()
        self.routes(app)
        # handler_cancellation: a client that gives up cancels its handler, as in production
        # servers; shutdown_timeout bounds the wait for anything still running on exit.
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.2)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class ScriptedOpenAIServer(LocalApi):
    """An aiohttp server on a free port of 127.0.0.1 playing scripted steps.

    Args:
        steps: played in order, one per chat-completion request.
        default: played once the script is used up; ``None`` means reply with ``responder``.
        responder: builds the default reply's text from the request body; reassignable.
        models: the ids ``GET /v1/models`` lists.
    """

    def __init__(
        self,
        *steps: Step,
        default: Step | None = None,
        responder: Responder = echo,
        models: Iterable[str] = ("scripted-model",),
    ) -> None:
        self._script: deque[Step] = deque(steps)
        self._models_script: deque[Step] = deque()
        self.default = default
        self.responder = responder
        self.models = tuple(models)
        self.requests: list[RecordedRequest] = []
        self.stream_ends: list[float] = []  # time.monotonic() when a streamed answer was complete
        self.stream_left: list[float] = []  # ... when its client went away during a pause
        self._closing = False
        super().__init__()
        self._handlers: set[asyncio.Task[Any]] = set()

    @property
    def completions(self) -> list[RecordedRequest]:
        """The chat-completion requests only (startup probes list models first)."""
        return [r for r in self.requests if r.path.endswith(("/chat/completions", "/messages"))]

    def push(self, *steps: Step) -> None:
        """Queue steps for the next chat-completion requests, after those already queued."""
        self._script.extend(steps)

    def push_models(self, *steps: Step) -> None:
        """Queue steps for the next ``GET /v1/models`` requests (errors, hangs, odd bodies)."""
        self._models_script.extend(steps)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._completions)
        # The Anthropic Messages API path plays the same script: error steps are alike.
        app.router.add_post("/v1/messages", self._completions)
        app.router.add_get("/v1/models", self._list_models)

    async def __aexit__(self, *exc_info: object) -> None:
        self._closing = True
        for task in list(self._handlers):
            task.cancel()
        await super().__aexit__(*exc_info)

    def _record(self, request: web.Request, body: dict[str, Any] | None) -> None:
        self.requests.append(
            RecordedRequest(
                request.method, request.path, dict(request.headers), body, time.monotonic()
            )
        )

    async def _list_models(self, request: web.Request) -> web.StreamResponse:
        self._record(request, None)
        if self._models_script:
            return await self._tracked(self._models_script.popleft(), request)
        return web.json_response({"object": "list", "data": [{"id": m} for m in self.models]})

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self._record(request, body)
        if self._script:
            step = self._script.popleft()
        elif self.default is not None:
            step = self.default
        else:
            step = reply(self.responder(body))
        return await self._tracked(step, request)

    async def _tracked(self, step: Step, request: web.Request) -> web.StreamResponse:
        """Play ``step`` with its task registered, so that ``__aexit__`` can cancel it."""
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            if step.kind == "stream":
                try:
                    response = await _stream(step, request)
                except asyncio.CancelledError:  # the client went away, or we are closing
                    if not (self._closing or step.cut):
                        self.stream_left.append(time.monotonic())
                    raise
                if not step.cut:
                    self.stream_ends.append(time.monotonic())
                return response
            return await _play(step, request)
        finally:
            self._handlers.discard(task)


async def _play(step: Step, request: web.Request) -> web.StreamResponse:
    if step.kind == "reply":
        return web.Response(
            body=completion_body(step.text, step.model, step.usage),
            content_type="application/json",
        )
    if step.kind == "status":
        return web.json_response(step.body, status=step.status, headers=dict(step.headers))
    if step.kind == "raw":
        kind = step.headers.get("Content-Type", "application/json")
        return web.Response(text=step.text, status=step.status, content_type=kind)
    if step.kind == "hang":
        await asyncio.sleep(step.seconds)
        return web.json_response({"error": {"message": "hung too long"}}, status=504)
    if step.kind == "drip":
        return await _drip(step, request)
    if step.kind == "echo_headers":
        said = " ".join(f"{k}: {v}" for k, v in request.headers.items()) + " " + step.text
        return web.json_response({"error": {"message": said}}, status=step.status)
    if step.kind == "truncated":
        return await _truncated(step, request)
    if step.kind in ("disconnect", "reset"):
        transport = request.transport
        assert transport is not None
        if step.kind == "reset":  # SO_LINGER 0: close() sends RST, not FIN
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.close()
        # The closed connection cancels this handler (handler_cancellation); wait for that.
        await asyncio.Event().wait()
    raise ValueError(f"unknown step {step.kind!r}")


async def _truncated(step: Step, request: web.Request) -> web.StreamResponse:
    body = completion_body(step.text)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = len(body)
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    assert request.transport is not None
    request.transport.close()
    await asyncio.Event().wait()  # cancelled with the connection
    return response


async def _drip(step: Step, request: web.Request) -> web.StreamResponse:
    body = completion_body(step.text)
    # Leading whitespace is valid JSON: it stretches a short body over many pieces.
    body = b" " * max(step.chunks - len(body), 0) + body
    size = -(-len(body) // max(step.chunks, 1))
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    try:
        for start in range(0, len(body), size):
            await asyncio.sleep(step.seconds)
            await response.write(body[start : start + size])
        await response.write_eof()
    except ConnectionError:
        pass  # the client gave up; that is what drip tests are about
    return response


def _sse_events(step: Step, anthropic: bool) -> tuple[list[bytes], list[bytes]]:
    """The events before the first piece and after the last, in the path's dialect."""

    def event(name: str, data: dict[str, Any]) -> bytes:
        head = f"event: {name}\n" if anthropic else ""
        return f"{head}data: {json.dumps(data)}\n\n".encode()

    usage = dict(step.usage or {})
    if anthropic:
        message = {"model": step.model, "usage": {"input_tokens": usage.get("prompt_tokens", 0)}}
        start = [
            event("message_start", {"type": "message_start", "message": message}),
            event("ping", {"type": "ping"}),
        ]
        output = {"output_tokens": usage.get("completion_tokens", 0)}
        end = [
            event("message_delta", {"type": "message_delta", "usage": output}),
            event("message_stop", {"type": "message_stop"}),
        ]
        return start, end
    last: dict[str, Any] = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    end = [event("", last)]
    if step.usage is not None:
        end.append(event("", {"choices": [], "usage": usage}))
    return [], [*end, b"data: [DONE]\n\n"]


def _sse_piece(step: Step, text: str, anthropic: bool) -> bytes:
    if anthropic:
        text_delta = {"type": "text_delta", "text": text}
        delta = {"type": "content_block_delta", "index": 0, "delta": text_delta}
        return f"event: content_block_delta\ndata: {json.dumps(delta)}\n\n".encode()
    chunk: dict[str, Any] = {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }
    if step.model is not None:
        chunk["model"] = step.model
    return f"data: {json.dumps(chunk)}\n\n".encode()


async def _stream(step: Step, request: web.Request) -> web.StreamResponse:
    anthropic = request.path.endswith("/messages")
    start, end = _sse_events(step, anthropic)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for event in start:
        await response.write(event)
    for piece in step.pieces:
        if isinstance(piece, str):
            await response.write(_sse_piece(step, piece, anthropic))
        else:
            await asyncio.sleep(piece)  # cancelled if the client goes away (handler_cancellation)
    if step.cut:
        assert request.transport is not None
        request.transport.close()
        await asyncio.Event().wait()  # cancelled with the connection
    for event in end:
        await response.write(event)
    await response.write_eof()
    return response
