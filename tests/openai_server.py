"""A real HTTP server on 127.0.0.1 that speaks the OpenAI chat API, scripted per request.

Tests push steps (a reply, an error status, a hang, a slow drip, a malformed body...) and the
server plays them in order, one per ``POST /v1/chat/completions``; once the script is used up
every request gets the default step, which by default echoes the last user message through
``responder``. Every request is recorded with its headers, JSON body and arrival time.

    async with ScriptedOpenAIServer() as llm:
        llm.push(status(429, headers={"Retry-After": "1"}), reply("ok"))
        ... ProviderConfig(base_url=llm.base_url) ...
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Responder = Callable[[dict[str, Any]], str]


@dataclass(frozen=True)
class Step:
    """What the server does for one request."""

    kind: str  # reply, status, hang, drip, raw
    text: str = ""
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    chunks: int = 0
    model: str = "scripted-model"
    usage: dict[str, int] | None = None


def reply(text: str, *, model: str = "scripted-model", usage: dict[str, int] | None = None) -> Step:
    return Step("reply", text=text, model=model, usage=usage)


def status(code: int, body: Any = None, headers: dict[str, str] | None = None) -> Step:
    default = {"error": {"message": f"scripted {code}", "type": "scripted"}}
    return Step(
        "status", status=code, body=default if body is None else body, headers=headers or {}
    )


def hang(seconds: float = 30.0) -> Step:
    return Step("hang", seconds=seconds)


def drip(chunks: int = 20, interval: float = 0.2) -> Step:
    return Step("drip", chunks=chunks, seconds=interval)


def raw(body: str, code: int = 200) -> Step:
    """A body sent verbatim (malformed JSON, an object without choices...)."""
    return Step("raw", text=body, status=code)


def malformed_json() -> Step:
    return raw('{"choices": [')


def empty_choices() -> Step:
    return raw(json.dumps({"id": "x", "model": "m", "choices": []}))


def _echo(body: dict[str, Any]) -> str:
    users = [m["content"] for m in body.get("messages", []) if m.get("role") == "user"]
    return f"echo: {users[-1] if users else ''}"


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    json: dict[str, Any] | None
    received_at: float


class ScriptedOpenAIServer:
    """An aiohttp server on a free port of 127.0.0.1 playing scripted steps."""

    def __init__(
        self,
        *steps: Step,
        responder: Responder = _echo,
        models: tuple[str, ...] = ("scripted-model",),
    ) -> None:
        self._script: deque[Step] = deque(steps)
        self.responder = responder
        self.models = models
        self.default: Step | None = None
        self.requests: list[RecordedRequest] = []
        self._runner: web.AppRunner | None = None
        self._pending: set[asyncio.Task[Any]] = set()
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def completions(self) -> list[RecordedRequest]:
        """The chat-completion requests only (startup probes list models first)."""
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def push(self, *steps: Step) -> None:
        self._script.extend(steps)

    async def __aenter__(self) -> ScriptedOpenAIServer:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in list(self._pending):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _models(self, request: web.Request) -> web.Response:
        self._record(request, None)
        return web.json_response({"object": "list", "data": [{"id": m} for m in self.models]})

    def _record(self, request: web.Request, body: dict[str, Any] | None) -> None:
        self.requests.append(
            RecordedRequest(
                request.method, request.path, dict(request.headers), body, time.monotonic()
            )
        )

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self._record(request, body)
        step = self._script.popleft() if self._script else self.default
        if step is None:
            step = reply(self.responder(body))
        task = asyncio.current_task()
        if task is not None:
            self._pending.add(task)
        try:
            return await self._play(step, request)
        finally:
            if task is not None:
                self._pending.discard(task)

    async def _play(self, step: Step, request: web.Request) -> web.StreamResponse:
        if step.kind == "reply":
            payload = {
                "id": "chatcmpl-scripted",
                "object": "chat.completion",
                "model": step.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": step.text},
                        "finish_reason": "stop",
                    }
                ],
            }
            if step.usage is not None:
                payload["usage"] = step.usage
            return web.json_response(payload)
        if step.kind == "status":
            return web.json_response(step.body, status=step.status, headers=step.headers)
        if step.kind == "raw":
            return web.Response(text=step.text, status=step.status, content_type="application/json")
        if step.kind == "hang":
            await asyncio.sleep(step.seconds)
            return web.json_response({"error": "hung too long"}, status=504)
        if step.kind == "drip":
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            with contextlib.suppress(ConnectionError):
                for _ in range(step.chunks):
                    await response.write(b" ")
                    await asyncio.sleep(step.seconds)
                await response.write(json.dumps({"choices": []}).encode())
            return response
        raise ValueError(f"unknown step {step.kind}")
