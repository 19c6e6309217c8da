"""Secrets never leak: what a server echoes back is redacted for every API provider.

A real server on 127.0.0.1 answers with an error whose message repeats every request header
(as some servers and proxies do), plus the configured URL. Whatever the provider type, the
API key, the values of configured ``headers``, credentials in ``base_url`` and the base64 of
``user:pass`` (the Basic auth header aiohttp derives from them) must appear neither in the
raised error, nor in the manager's snapshot (``/health``, heartbeats), nor in any log line.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import aiohttp
import pytest
from structlog.testing import capture_logs

from kryten_llm.config import LLMConfig, ProviderConfig
from kryten_llm.errors import BadRequest, ProviderError
from kryten_llm.llm import ChatMessage, CompletionRequest, build_manager
from kryten_llm.llm.redact import Redactor
from tests.openai_server import ScriptedOpenAIServer, Step, echo_headers, status

REQUEST = CompletionRequest(messages=(ChatMessage("user", "hi"),))
API_KEY = "sk-live-4f9a8b7c6d5e"
HEADER_SECRET = "tok-header-31337-zz"
USER, PASSWORD = "alice", "s3cr3t-pa55"
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def leaks(text: str, secrets: list[str]) -> list[str]:
    return [s for s in secrets if s in text]


CUT = 200  # characters of a server's message kept in an error


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize(
    "step",
    [
        pytest.param(echo_headers(500), id="headers-echoed"),
        pytest.param(
            # A secret that straddles the cut: cutting first would leak its first characters.
            status(500, {"error": {"message": "x" * (CUT - 6) + f"{HEADER_SECRET} {API_KEY}"}}),
            id="secret-across-the-200-char-cut",
        ),
    ],
)
async def test_an_echoed_key_and_headers_are_redacted(
    session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch, kind: str, step: Step
) -> None:
    monkeypatch.setenv("TEST_REDACT_KEY", API_KEY)
    async with ScriptedOpenAIServer(default=step) as llm:
        config = LLMConfig(
            providers={
                "api": ProviderConfig(
                    type=kind,  # type: ignore[arg-type]
                    base_url=llm.base_url,
                    api_key_env="TEST_REDACT_KEY",
                    headers={"X-Secret-Token": HEADER_SECRET},
                )
            },
            default_provider="api",
            retry={"attempts": 1},  # type: ignore[arg-type]
        )
        manager = build_manager(config, session)
        with capture_logs() as logs, pytest.raises(ProviderError) as caught:
            await manager.complete(REQUEST, deadline=time.monotonic() + 10)
        (seen,) = llm.completions
    assert seen.headers["X-Secret-Token"] == HEADER_SECRET  # it was sent
    secrets = [API_KEY, HEADER_SECRET, API_KEY[:6], HEADER_SECRET[:6]]
    assert leaks(str(caught.value), secrets) == []
    assert "[redacted]"[:6] in str(caught.value)
    assert leaks(json.dumps(manager.snapshot()), secrets) == []
    assert leaks(json.dumps(logs, default=str), secrets) == []


async def test_credentials_in_the_base_url_are_redacted(session: aiohttp.ClientSession) -> None:
    async with ScriptedOpenAIServer() as llm:
        url = llm.base_url.replace("http://", f"http://{USER}:{PASSWORD}@")
        llm.default = echo_headers(502, extra=f"upstream {url} refused")
        config = LLMConfig(
            providers={"api": ProviderConfig(base_url=url)},
            default_provider="api",
            retry={"attempts": 1},  # type: ignore[arg-type]
        )
        manager = build_manager(config, session)
        with capture_logs() as logs, pytest.raises(ProviderError) as caught:
            await manager.complete(REQUEST, deadline=time.monotonic() + 10)
        (seen,) = llm.completions
    assert seen.headers["Authorization"] == f"Basic {BASIC}"  # aiohttp sent it; it was echoed
    secrets = [PASSWORD, BASIC, f"{USER}:{PASSWORD}"]
    assert leaks(str(caught.value), secrets) == []
    assert leaks(json.dumps(manager.snapshot()), secrets) == []
    assert leaks(json.dumps(logs, default=str), secrets) == []


def test_the_redactor_knows_every_kind_of_secret() -> None:
    config = ProviderConfig(
        base_url=f"https://{USER}:p%40ss%2Fword@api.example.invalid/v1",
        api_key=API_KEY,  # type: ignore[arg-type]
        headers={"Authorization": f"Basic {BASIC}", "X-Other": HEADER_SECRET},
    )
    redact = Redactor.for_config(config)
    text = (
        f"key {API_KEY} bearer {HEADER_SECRET} basic {BASIC} pair {USER}:{PASSWORD} "
        f"url-pass p@ss/word encoded p%40ss%2Fword "
        f"url-basic {base64.b64encode(b'alice:p@ss/word').decode()}"
    )
    cleaned = redact(text)
    for secret in (API_KEY, HEADER_SECRET, BASIC, PASSWORD, "p@ss/word", "p%40ss%2Fword"):
        assert secret not in cleaned
    assert cleaned.startswith("key [redacted] bearer [redacted]")


async def test_credentials_in_the_url_and_a_key_make_the_provider_misconfigured(
    session: aiohttp.ClientSession,
) -> None:
    """aiohttp cannot send both (Basic from the URL, Bearer from the key): a config error."""
    async with ScriptedOpenAIServer() as llm:
        url = llm.base_url.replace("http://", f"http://{USER}:{PASSWORD}@")
        config = LLMConfig(
            providers={"api": ProviderConfig(base_url=url, api_key=API_KEY)},  # type: ignore[arg-type]
            default_provider="api",
        )
        manager = build_manager(config, session)
        with pytest.raises(BadRequest, match="cannot be sent") as caught:
            await manager.complete(REQUEST, deadline=time.monotonic() + 10)
    assert leaks(str(caught.value), [PASSWORD, API_KEY, BASIC]) == []
    assert manager.snapshot()["api"]["state"] == "misconfigured"


def test_validate_config_masks_nats_credentials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The summary an operator pastes into a ticket never holds the NATS password."""
    import json

    from kryten_llm.cli import main

    config = tmp_path / "c.json"
    config.write_text(json.dumps({"nats": {"servers": ["nats://alice:s3cretpw@127.0.0.1:4222"]}}))
    assert main(["--config", str(config), "--validate-config"]) == 0
    out = capsys.readouterr().out
    assert "s3cretpw" not in out
    assert "127.0.0.1:4222" in out


async def test_connect_retries_never_log_nats_credentials() -> None:
    """``nats_unreachable`` names the servers with their credentials masked."""
    import asyncio

    from kryten_llm.bus.connection import connect
    from kryten_llm.config import NatsConfig
    from tests.bridge import Escapes
    from tests.conftest import eventually
    from tests.openai_server import closed_port

    cfg = NatsConfig(servers=[f"nats://alice:s3cretpw@127.0.0.1:{closed_port()}"])
    stop = asyncio.Event()
    with Escapes() as escapes:  # captures structlog whatever other tests configured
        logs = escapes.logs
        task = asyncio.create_task(connect(cfg, stop, running=lambda: False))
        await eventually(lambda: bool(escapes.events("nats_unreachable")))
        stop.set()
        assert await task is None
    assert "s3cretpw" not in repr(logs)
    assert "127.0.0.1" in repr(logs)
