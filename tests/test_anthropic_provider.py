"""The Anthropic provider against a real HTTP server on 127.0.0.1 speaking the Messages API."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from kryten_llm.config import ProviderConfig
from kryten_llm.errors import (
    AuthFailed,
    BadRequest,
    ProviderError,
    ProviderUnavailable,
    QuotaExhausted,
    RateLimited,
)
from kryten_llm.llm import AnthropicProvider, ChatMessage, CompletionRequest, create_provider


class MessagesServer:
    """Plays (status, body, headers) answers in order; records every request."""

    def __init__(self) -> None:
        self.script: deque[tuple[int, Any, dict[str, str]]] = deque()
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}/v1"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _messages(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.json()))
        status, body, headers = self.script.popleft() if self.script else (200, ANSWER, {})
        return web.json_response(body, status=status, headers=headers)


ANSWER = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-test-2026",
    "content": [{"type": "text", "text": "Plan 9 is "}, {"type": "text", "text": "wonderful."}],
    "usage": {"input_tokens": 42, "output_tokens": 7},
}


def error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


@pytest.fixture
async def server() -> AsyncIterator[MessagesServer]:
    s = MessagesServer()
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


def claude(session: aiohttp.ClientSession, base_url: str) -> AnthropicProvider:
    config = ProviderConfig(
        type="anthropic", base_url=base_url, model="claude-x", api_key_env="TEST_ANTHROPIC_KEY"
    )
    made = create_provider("claude", config, session)
    assert isinstance(made, AnthropicProvider)
    return made


REQUEST = CompletionRequest(
    messages=(
        ChatMessage("system", "be brief"),
        ChatMessage("user", "context"),
        ChatMessage("user", "question"),
    ),
    max_tokens=50,
)


async def test_a_message_is_asked_natively_and_its_text_blocks_joined(
    server: MessagesServer, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", "sk-ant-test")
    result = await claude(session, server.base_url).complete(REQUEST)
    assert result.text == "Plan 9 is wonderful."
    assert (result.provider, result.model) == ("claude", "claude-test-2026")
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (42, 7)
    headers, body = server.requests[0]
    assert headers["x-api-key"] == "sk-ant-test"
    assert headers["anthropic-version"] == "2023-06-01"
    assert body["system"] == "be brief"
    # consecutive user turns are merged: the API wants alternating roles
    assert body["messages"] == [{"role": "user", "content": "context\n\nquestion"}]
    assert (body["model"], body["max_tokens"]) == ("claude-x", 50)


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected"),
    [
        pytest.param(
            429,
            error("rate_limit_error", "slow down"),
            {"retry-after": "3"},
            RateLimited,
            id="429->RateLimited",
        ),
        pytest.param(
            529,
            error("overloaded_error", "Overloaded"),
            {},
            ProviderUnavailable,
            id="529-overloaded->Unavailable",
        ),
        pytest.param(500, error("api_error", "oops"), {}, ProviderUnavailable, id="500"),
        pytest.param(401, error("authentication_error", "bad key"), {}, AuthFailed, id="401"),
        pytest.param(400, error("invalid_request_error", "bad model"), {}, BadRequest, id="400"),
        pytest.param(
            400,
            error("invalid_request_error", "Your credit balance is too low"),
            {},
            QuotaExhausted,
            id="credit->QuotaExhausted",
        ),
        pytest.param(413, error("request_too_large", "too big"), {}, BadRequest, id="413"),
        pytest.param(403, error("permission_error", "no"), {}, AuthFailed, id="403"),
        pytest.param(402, error("billing_error", "pay"), {}, QuotaExhausted, id="402"),
        pytest.param(404, error("not_found_error", "model"), {}, BadRequest, id="404"),
    ],
)
async def test_errors_are_classified(
    server: MessagesServer,
    session: aiohttp.ClientSession,
    status: int,
    body: dict[str, Any],
    headers: dict[str, str],
    expected: type[ProviderError],
) -> None:
    server.script.append((status, body, headers))
    with pytest.raises(expected) as info:
        await claude(session, server.base_url).complete(REQUEST)
    if expected is RateLimited:
        assert info.value.retry_after == 3  # type: ignore[attr-defined]
    if expected is AuthFailed:
        assert "set TEST_ANTHROPIC_KEY" in str(info.value)


async def test_a_body_without_content_is_unavailable(
    server: MessagesServer, session: aiohttp.ClientSession
) -> None:
    server.script.append((200, {"id": "x", "model": "m"}, {}))
    with pytest.raises(ProviderUnavailable, match="malformed"):
        await claude(session, server.base_url).complete(REQUEST)


async def test_the_probe_is_a_one_token_completion(
    server: MessagesServer, session: aiohttp.ClientSession
) -> None:
    detail = await claude(session, server.base_url).probe(5.0)
    assert "one-token probe" in detail
    _, body = server.requests[0]
    assert body["max_tokens"] == 1


def test_the_anthropic_provider_shares_the_http_ladder_not_the_openai_module() -> None:
    """One status ladder in llm/http.py; the providers do not import each other."""
    import ast
    import inspect

    import kryten_llm.llm.anthropic as anthropic

    tree = ast.parse(inspect.getsource(anthropic))
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert "kryten_llm.llm.http" in imported
    assert "kryten_llm.llm.openai" not in imported
