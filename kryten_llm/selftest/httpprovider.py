"""The self-test's scripted HTTP provider: an OpenAI-compatible server that fails on purpose.

The bot reaches it over real HTTP on 127.0.0.1 as an ``openai`` provider named ``flaky``. It
lists a model (so the bot's startup probe finds it ready) and answers every chat completion
with a 500, which is what the failover and "all providers down" scenarios need. With
:attr:`Behaviour.SILENT` it accepts requests and never answers (a hung upstream): the
self-test's own test uses that to see the matching scenarios fail. Every request is recorded
with the last user message, so a scenario can count the requests its message caused.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from aiohttp import web

MODEL = "flaky-1"


class Behaviour(StrEnum):
    """What the server does with a chat completion."""

    FAIL = "fail"  # HTTP 500 at once
    SILENT = "silent"  # no answer until the server closes


@dataclass(frozen=True, slots=True)
class SeenRequest:
    """One chat completion the server received."""

    at: float  # time.monotonic()
    last_user: str
    status: int | None  # None: never answered


class FlakyProvider:
    """An aiohttp server on a free port of 127.0.0.1; ``async with`` starts and stops it."""

    def __init__(self, behaviour: Behaviour = Behaviour.FAIL) -> None:
        self.behaviour = behaviour
        self.requests: list[SeenRequest] = []
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def __aenter__(self) -> FlakyProvider:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._complete)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def close(self) -> None:
        """Release hung requests (they get a 503), then stop serving. Harmless twice."""
        self._closing.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    def requests_about(self, marker: str) -> list[SeenRequest]:
        """The requests whose last user message contains ``marker``."""
        return [r for r in self.requests if marker in r.last_user]

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    async def _complete(self, request: web.Request) -> web.Response:
        try:
            body: Any = await request.json()
            users = [m.get("content", "") for m in body["messages"] if m.get("role") == "user"]
            last_user = str(users[-1]) if users else ""
        except (ValueError, KeyError, TypeError, AttributeError):
            last_user = ""
        if self.behaviour is Behaviour.SILENT:
            seen = SeenRequest(time.monotonic(), last_user, None)
            self.requests.append(seen)
            await self._closing.wait()
            return web.json_response({"error": {"message": "selftest stopping"}}, status=503)
        self.requests.append(SeenRequest(time.monotonic(), last_user, 500))
        return web.json_response(
            {"error": {"message": "failing on purpose (kryten-llm selftest)", "type": "server"}},
            status=500,
        )
