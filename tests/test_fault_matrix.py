"""The fault matrix: every way a primary can fail, and a healthy backup that answers in time.

Each case points a real OpenAI-compatible provider, built by ``build_manager`` from an
``LLMConfig``, at a scripted HTTP server on 127.0.0.1 that fails in one way every time, with a
second real server behind it as the backup. The request must be answered by the backup within
the primary's timeout plus the backup's latency (measured with a monotonic clock: the bound is
part of the behaviour, since a reply has one deadline), and the manager's snapshot must say
what became of the primary: misconfigured, cooling, or one more failure towards its circuit.
``retry.attempts`` is 1, as in production configs that prefer failing over to retrying.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from kryten_llm.config import LLMConfig, ProviderConfig
from kryten_llm.llm import ChatMessage, CompletionRequest, build_manager
from tests.openai_server import (
    ScriptedOpenAIServer,
    Step,
    closed_port,
    disconnect,
    empty_choices,
    empty_content,
    hang,
    malformed_json,
    reply,
    reset,
    status,
    truncated,
)

REQUEST = CompletionRequest(messages=(ChatMessage("user", "hello"),))
PRIMARY_TIMEOUT = 1.0  # seconds: the primary's configured timeout_seconds
SLACK = 1.0  # seconds on top of the bound: scheduling on a busy 2-core machine
DEADLINE = 45.0  # the live bot's reply deadline


@dataclass(frozen=True, slots=True)
class Fault:
    """What the primary does, and what its snapshot must say afterwards."""

    step: Step | None  # None: nothing listens on the primary's port
    state: str
    kind: str
    failures: int = 0  # consecutive failures towards opening the circuit
    timeouts: int = 0
    min_retry_in: float = 0.0


FAULTS = [
    pytest.param(
        Fault(status(429, headers={"Retry-After": "0.5"}), "cooling", "RateLimited"),
        id="429-short-retry-after->cooling",
    ),
    pytest.param(
        Fault(
            status(429, headers={"Retry-After": "120"}), "cooling", "RateLimited", min_retry_in=100
        ),
        id="429-long-retry-after->cooling",
    ),
    pytest.param(Fault(status(500), "closed", "ProviderUnavailable", 1), id="500->failure"),
    pytest.param(Fault(status(502), "closed", "ProviderUnavailable", 1), id="502->failure"),
    pytest.param(Fault(status(503), "closed", "ProviderUnavailable", 1), id="503->failure"),
    pytest.param(Fault(None, "closed", "ProviderUnavailable", 1), id="refused->failure"),
    pytest.param(
        Fault(hang(60), "closed", "ProviderTimeout", 1, timeouts=1), id="hang->timeout-failure"
    ),
    pytest.param(Fault(status(401), "misconfigured", "AuthFailed"), id="401->misconfigured"),
    pytest.param(Fault(status(400), "closed", "BadRequest", 1), id="400->refused-request-only"),
    pytest.param(Fault(status(404), "misconfigured", "BadRequest"), id="404->misconfigured"),
    pytest.param(
        Fault(status(402), "cooling", "QuotaExhausted", min_retry_in=3000), id="402->cooling"
    ),
    pytest.param(
        Fault(malformed_json(), "closed", "ProviderUnavailable", 1), id="malformed-json->failure"
    ),
    pytest.param(
        Fault(empty_choices(), "closed", "UnusableAnswer", 1), id="empty-choices->unusable"
    ),
    pytest.param(
        Fault(empty_content(), "closed", "UnusableAnswer", 1), id="empty-content->unusable"
    ),
    pytest.param(
        Fault(empty_content(" \n\t "), "closed", "UnusableAnswer", 1),
        id="whitespace-content->unusable",
    ),
    pytest.param(
        Fault(truncated(), "closed", "ProviderUnavailable", 1), id="truncated-body->failure"
    ),
    pytest.param(
        Fault(reset(), "closed", "ProviderUnavailable", 1), id="connection-reset->failure"
    ),
    pytest.param(
        Fault(disconnect(), "closed", "ProviderUnavailable", 1), id="connection-closed->failure"
    ),
]


def config(primary_url: str, backup_url: str, **llm: Any) -> LLMConfig:
    """A primary with a short timeout, a backup with the default one, no retries."""
    return LLMConfig(
        providers={
            "primary": ProviderConfig(
                base_url=primary_url, model="p", timeout_seconds=PRIMARY_TIMEOUT
            ),
            "backup": ProviderConfig(base_url=backup_url, model="b"),
        },
        default_provider="primary",
        fallback=["backup"],
        retry={"attempts": 1},  # type: ignore[arg-type]
        **llm,
    )


@pytest.mark.parametrize("fault", FAULTS)
async def test_the_backup_answers_in_time_whatever_the_primary_does(
    session: aiohttp.ClientSession, fault: Fault
) -> None:
    """One failing call of the primary costs at most its timeout; its health says why."""
    async with (
        ScriptedOpenAIServer(default=fault.step) as primary,
        ScriptedOpenAIServer(reply("from the backup")) as backup,
    ):
        url = primary.base_url if fault.step is not None else f"http://127.0.0.1:{closed_port()}/v1"
        manager = build_manager(config(url, backup.base_url), session)
        started = time.monotonic()
        answer = await manager.complete(REQUEST, deadline=started + DEADLINE)
        elapsed = time.monotonic() - started
    backup_latency = answer.latency_ms / 1000
    assert (answer.provider, answer.text, answer.tried) == (
        "backup",
        "from the backup",
        ("primary",),
    )
    assert elapsed <= PRIMARY_TIMEOUT + backup_latency + SLACK
    if fault.kind != "ProviderTimeout":
        assert elapsed < PRIMARY_TIMEOUT  # an answered failure does not wait for the timeout
    snapshot = manager.snapshot()["primary"]
    assert {
        "state": snapshot["state"],
        "last_error_kind": snapshot["last_error_kind"],
        "consecutive_failures": snapshot["consecutive_failures"],
        "timeouts": snapshot["timeouts"],
    } == {
        "state": fault.state,
        "last_error_kind": fault.kind,
        "consecutive_failures": fault.failures,
        "timeouts": fault.timeouts,
    }
    assert isinstance(snapshot["retry_in"], float)
    assert snapshot["retry_in"] >= fault.min_retry_in
    assert manager.snapshot()["backup"]["state"] == "closed"
