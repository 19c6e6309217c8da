"""Providers against real HTTP servers on 127.0.0.1: requests as sent, errors as classified."""

from __future__ import annotations

import time
from email.utils import formatdate

import aiohttp
import pytest

from kryten_llm.config import LLMConfig, ProviderConfig
from kryten_llm.errors import (
    AuthFailed,
    BadRequest,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    QuotaExhausted,
    RateLimited,
    UnusableAnswer,
)
from kryten_llm.llm import (
    ChatMessage,
    CompletionRequest,
    OpenAIProvider,
    ScriptedProvider,
    create_provider,
    provider_types,
)
from kryten_llm.llm.manager import ProviderManager
from tests.natsserver import free_port
from tests.openai_server import (
    ScriptedOpenAIServer,
    Step,
    drip,
    empty_choices,
    hang,
    malformed_json,
    raw,
    reply,
    status,
)

REQUEST = CompletionRequest(
    messages=(ChatMessage("system", "be brief"), ChatMessage("user", "hello there"))
)


def provider(session: aiohttp.ClientSession, base_url: str, **kw: object) -> OpenAIProvider:
    config = ProviderConfig(type="openai", base_url=base_url, model="m1", **kw)  # type: ignore[arg-type]
    made = create_provider("cloud", config, session)
    assert isinstance(made, OpenAIProvider)
    return made


async def test_a_completion_records_text_model_usage_and_latency(
    session: aiohttp.ClientSession,
) -> None:
    usage = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    async with ScriptedOpenAIServer(reply("hi!", model="m1-2026", usage=usage)) as llm:
        result = await provider(session, llm.base_url).complete(REQUEST)
    assert result.text == "hi!"
    assert result.provider == "cloud"
    assert result.model == "m1-2026"  # the model that answered, not the one asked for
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (12, 3)
    assert result.latency_ms > 0


async def test_the_request_carries_model_messages_settings_and_the_key(
    session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_LLM_KEY", "sk-test-123")
    async with ScriptedOpenAIServer() as llm:
        p = provider(
            session,
            llm.base_url,
            api_key_env="TEST_LLM_KEY",
            temperature=0.3,
            max_tokens=50,
            headers={"X-Title": "kryten"},
        )
        await p.complete(REQUEST)
        (seen,) = llm.requests
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["Authorization"] == "Bearer sk-test-123"
    assert seen.headers["X-Title"] == "kryten"
    assert seen.json == {
        "model": "m1",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello there"},
        ],
        "max_tokens": 50,
        "temperature": 0.3,
        "stream": False,
    }


ERRORS = [
    pytest.param(status(429, headers={"Retry-After": "7"}), RateLimited, id="429->RateLimited"),
    pytest.param(status(500), ProviderUnavailable, id="500->Unavailable"),
    pytest.param(status(502), ProviderUnavailable, id="502->Unavailable"),
    pytest.param(status(503), ProviderUnavailable, id="503->Unavailable"),
    pytest.param(status(401), AuthFailed, id="401->AuthFailed"),
    pytest.param(status(403), AuthFailed, id="403->AuthFailed"),
    pytest.param(status(402), QuotaExhausted, id="402->QuotaExhausted"),
    pytest.param(
        status(400, {"error": {"message": "Insufficient credits for this request"}}),
        QuotaExhausted,
        id="400-credit->QuotaExhausted",
    ),
    pytest.param(
        status(429, {"error": {"code": "insufficient_quota", "message": "quota"}}),
        QuotaExhausted,
        id="429-quota->QuotaExhausted",
    ),
    pytest.param(status(400), BadRequest, id="400->BadRequest"),
    pytest.param(status(404), BadRequest, id="404->BadRequest"),
    pytest.param(status(422), BadRequest, id="422->BadRequest"),
    pytest.param(malformed_json(), ProviderUnavailable, id="malformed-json"),
    pytest.param(status(413), BadRequest, id="413->BadRequest"),
    pytest.param(status(408), ProviderTimeout, id="408->Timeout"),
    pytest.param(empty_choices(), UnusableAnswer, id="empty-choices->Unusable"),
    pytest.param(
        raw('{"choices": [{"message": {"role": "assistant", "content": null}}]}'),
        UnusableAnswer,
        id="null-content->Unusable",
    ),
    pytest.param(raw("[1, 2]"), ProviderUnavailable, id="not-an-object"),
]


@pytest.mark.parametrize(("step", "error"), ERRORS)
async def test_errors_are_classified(
    session: aiohttp.ClientSession, step: Step, error: type[ProviderError]
) -> None:
    async with ScriptedOpenAIServer(step) as llm:
        with pytest.raises(error) as info:
            await provider(session, llm.base_url).complete(REQUEST)
    assert info.value.provider == "cloud"
    retryable = issubclass(error, RateLimited | ProviderUnavailable | ProviderTimeout)
    assert info.value.retryable is retryable


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param("7", 7.0, id="seconds"),
        pytest.param("in 30 s as an HTTP-date", 30.0, id="http-date"),
        pytest.param("soon", None, id="garbage"),
    ],
)
async def test_retry_after_is_parsed(
    session: aiohttp.ClientSession, header: str, expected: float | None
) -> None:
    if header.startswith("in 30 s"):  # built now, not at collection time
        header = formatdate(time.time() + 30, usegmt=True)
    async with ScriptedOpenAIServer(status(429, headers={"Retry-After": header})) as llm:
        with pytest.raises(RateLimited) as info:
            await provider(session, llm.base_url).complete(REQUEST)
    if expected is None:
        assert info.value.retry_after is None
    else:
        assert info.value.retry_after == pytest.approx(expected, abs=2)


async def test_an_auth_failure_names_the_variable_to_set_and_never_the_key(
    session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_LLM_KEY", "sk-secret-999")
    async with ScriptedOpenAIServer(status(401)) as llm:
        with pytest.raises(AuthFailed) as info:
            await provider(session, llm.base_url, api_key_env="TEST_LLM_KEY").complete(REQUEST)
    assert "set TEST_LLM_KEY" in str(info.value)
    assert "sk-secret-999" not in str(info.value)


async def test_a_hung_server_times_out_within_the_budget(session: aiohttp.ClientSession) -> None:
    async with ScriptedOpenAIServer(hang(30)) as llm:
        started = time.monotonic()
        with pytest.raises(ProviderTimeout):
            await provider(session, llm.base_url, timeout_seconds=0.3).complete(REQUEST)
    assert time.monotonic() - started < 5


async def test_a_slow_drip_of_bytes_cannot_outlast_the_budget(
    session: aiohttp.ClientSession,
) -> None:
    """Bytes arriving every 0.1 s keep a read timeout happy; the total budget still holds."""
    async with ScriptedOpenAIServer(drip(chunks=50, interval=0.1)) as llm:
        started = time.monotonic()
        with pytest.raises(ProviderTimeout):
            await provider(session, llm.base_url, timeout_seconds=0.5).complete(REQUEST)
    assert time.monotonic() - started < 4


async def test_request_timeout_overrides_the_config(session: aiohttp.ClientSession) -> None:
    async with ScriptedOpenAIServer(hang(30)) as llm:
        request = CompletionRequest(messages=REQUEST.messages, timeout_seconds=0.2)
        started = time.monotonic()
        with pytest.raises(ProviderTimeout):
            await provider(session, llm.base_url, timeout_seconds=60).complete(request)
    assert time.monotonic() - started < 5


async def test_connection_refused_is_unavailable(session: aiohttp.ClientSession) -> None:
    with pytest.raises(ProviderUnavailable, match="connection failed"):
        await provider(session, f"http://127.0.0.1:{free_port()}/v1").complete(REQUEST)


async def test_list_models(session: aiohttp.ClientSession) -> None:
    async with ScriptedOpenAIServer(models=("qwen2.5", "smollm2")) as llm:
        assert await provider(session, llm.base_url).list_models() == ["qwen2.5", "smollm2"]


async def test_the_manager_bounds_the_call_by_the_reply_deadline(
    session: aiohttp.ClientSession,
) -> None:
    async with ScriptedOpenAIServer(hang(30)) as llm:
        manager = ProviderManager(
            {"cloud": provider(session, llm.base_url)},
            LLMConfig(providers={"cloud": ProviderConfig(model="m1")}, default_provider="cloud"),
        )
        started = time.monotonic()
        with pytest.raises(ProviderTimeout):
            await manager.complete(REQUEST, deadline=time.monotonic() + 0.3)
        assert time.monotonic() - started < 5
        with pytest.raises(ProviderTimeout, match="no time left"):
            await manager.complete(REQUEST, deadline=time.monotonic() - 1)


async def test_scripted_provider_echoes_or_rotates(session: aiohttp.ClientSession) -> None:
    echo = ScriptedProvider("echo", ProviderConfig(type="scripted", model="e"), session)
    assert (await echo.complete(REQUEST)).text == "You said: hello there"
    canned = ScriptedProvider(
        "canned", ProviderConfig(type="scripted", replies=["a", "b"], latency_ms=50), session
    )
    started = time.monotonic()
    texts = [(await canned.complete(REQUEST)).text for _ in range(3)]
    assert texts == ["a", "b", "a"]
    assert time.monotonic() - started >= 0.15


def test_the_builtin_types_are_registered() -> None:
    assert provider_types() == ["anthropic", "local", "openai", "random", "scripted"]
