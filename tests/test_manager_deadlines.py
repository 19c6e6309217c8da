"""The manager's time budgets and unusable answers, against real scripted HTTP servers.

Each attempt has its own timeout inside the reply's deadline (``kryten_llm.llm.budget``), a
timeout counts towards opening the circuit, and an answer that cannot be used (blank, or
refused by the caller's ``accept`` check) is a failure like any other: retried, counted,
failed over. Elapsed times are measured with a monotonic clock; the bounds are behaviour.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from kryten_llm.config import LLMConfig, ProviderConfig
from kryten_llm.errors import ConfigError, ProviderTimeout, UnusableAnswer
from kryten_llm.llm import ChatMessage, Completion, CompletionRequest, build_manager
from kryten_llm.llm.budget import attempt_budget
from kryten_llm.llm.manager import ProviderManager
from tests.conftest import eventually
from tests.openai_server import ScriptedOpenAIServer, hang, reply

REQUEST = CompletionRequest(messages=(ChatMessage("user", "hi"),))
SLACK = 1.0  # seconds: scheduling on a busy machine
GUARD = 15.0  # seconds: the old behaviour (one call eats the deadline) fails here, not in CI


def chain(urls: dict[str, tuple[str, float]], **llm: Any) -> LLMConfig:
    """Providers in order, each ``name: (base_url, timeout_seconds)``."""
    return LLMConfig(
        providers={
            name: ProviderConfig(base_url=url, model=name, timeout_seconds=timeout)
            for name, (url, timeout) in urls.items()
        },
        default_provider=next(iter(urls)),
        fallback=list(urls)[1:],
        **llm,
    )


async def test_a_hanging_primary_is_abandoned_after_its_own_timeout(
    session: aiohttp.ClientSession,
) -> None:
    """Contract: attempts 1, a primary with timeout_seconds 1 that never answers is given up
    after ~1 s of a 45 s deadline, and the backup answers."""
    async with (
        ScriptedOpenAIServer(default=hang(60)) as primary,
        ScriptedOpenAIServer(reply("backup")) as backup,
    ):
        config = chain(
            {"primary": (primary.base_url, 1.0), "backup": (backup.base_url, 30.0)},
            retry={"attempts": 1},
        )
        manager = build_manager(config, session)
        started = time.monotonic()
        async with asyncio.timeout(GUARD):
            answer = await manager.complete(REQUEST, deadline=started + 45)
        elapsed = time.monotonic() - started
    assert answer.provider == "backup"
    assert 0.9 <= elapsed <= 1.0 + answer.latency_ms / 1000 + SLACK
    assert manager.snapshot()["primary"]["timeouts"] == 1


async def test_a_primary_slower_than_the_deadline_leaves_the_backup_its_share(
    session: aiohttp.ClientSession,
) -> None:
    """A primary allowed 60 s under a 3 s deadline is cut short so that the backup still
    answers before the deadline."""
    async with (
        ScriptedOpenAIServer(default=hang(60)) as primary,
        ScriptedOpenAIServer(reply("backup")) as backup,
    ):
        config = chain(
            {"primary": (primary.base_url, 60.0), "backup": (backup.base_url, 30.0)},
            retry={"attempts": 1},
        )
        manager = build_manager(config, session)
        started = time.monotonic()
        async with asyncio.timeout(GUARD):
            answer = await manager.complete(REQUEST, deadline=started + 3)
        elapsed = time.monotonic() - started
    assert answer.provider == "backup"
    assert elapsed < 3


async def test_when_every_provider_hangs_every_circuit_opens(
    session: aiohttp.ClientSession,
) -> None:
    """Timeouts count towards the circuit: two hanging replies open both providers, which is
    what /health reads (state ``open``, ``last_error_kind`` ProviderTimeout)."""
    async with (
        ScriptedOpenAIServer(default=hang(60)) as a,
        ScriptedOpenAIServer(default=hang(60)) as b,
    ):
        config = chain(
            {"a": (a.base_url, 0.3), "b": (b.base_url, 0.3)},
            retry={"attempts": 1},
            circuit={"failure_threshold": 2, "open_seconds": 60},
        )
        manager = build_manager(config, session)
        for _ in range(2):
            started = time.monotonic()
            async with asyncio.timeout(GUARD):
                with pytest.raises(ProviderTimeout):
                    await manager.complete(REQUEST, deadline=started + 10)
            assert time.monotonic() - started <= 0.6 + SLACK
    for name in ("a", "b"):
        snapshot = manager.snapshot()[name]
        assert snapshot["state"] == "open"
        assert snapshot["last_error_kind"] == "ProviderTimeout"
        assert (snapshot["consecutive_failures"], snapshot["timeouts"]) == (2, 2)


async def test_a_request_timeout_replaces_the_providers_own(
    session: aiohttp.ClientSession,
) -> None:
    """A caller that sets ``timeout_seconds`` (the explorer) caps each attempt with it."""
    async with ScriptedOpenAIServer(default=hang(60)) as only:
        manager = build_manager(chain({"a": (only.base_url, 30.0)}, retry={"attempts": 1}), session)
        request = CompletionRequest(messages=REQUEST.messages, timeout_seconds=0.4)
        started = time.monotonic()
        with pytest.raises(ProviderTimeout):
            await manager.complete(request, deadline=started + 20)
    assert time.monotonic() - started <= 0.4 + SLACK


@pytest.mark.parametrize(
    ("own", "left", "later", "budget"),
    [
        pytest.param(3.0, 44.9, [30.0], 3.0, id="own-timeout-first"),
        pytest.param(60.0, 44.9, [30.0], 39.9, id="reserve-5s-for-the-backup"),
        pytest.param(60.0, 44.9, [2.0, 30.0], 37.9, id="reserve-capped-by-a-short-timeout"),
        pytest.param(60.0, 4.0, [30.0], 2.0, id="never-less-than-an-equal-share"),
        pytest.param(60.0, 4.0, [], 4.0, id="the-last-provider-gets-all-that-is-left"),
    ],
)
def test_attempt_budgets(own: float, left: float, later: list[float], budget: float) -> None:
    assert attempt_budget(own, left, later) == pytest.approx(budget)


async def test_an_empty_answer_is_retried_then_the_backup_answers(
    session: aiohttp.ClientSession,
) -> None:
    async with (
        ScriptedOpenAIServer(default=reply("")) as primary,
        ScriptedOpenAIServer(reply("backup")) as backup,
    ):
        config = chain(
            {"primary": (primary.base_url, 5.0), "backup": (backup.base_url, 5.0)},
            retry={"attempts": 2, "base_delay_seconds": 0.01},
        )
        manager = build_manager(config, session)
        answer = await manager.complete(REQUEST, deadline=time.monotonic() + 10)
        asked = len(primary.completions)
    assert (answer.provider, answer.text, answer.tried) == ("backup", "backup", ("primary",))
    assert asked == 2
    snapshot = manager.snapshot()["primary"]
    assert (snapshot["last_error_kind"], snapshot["consecutive_failures"]) == ("UnusableAnswer", 2)


async def test_an_answer_the_caller_refuses_is_an_unusable_answer(
    session: aiohttp.ClientSession,
) -> None:
    """``accept`` (the responder's "the formatter stripped everything") turns an answer into a
    failure: retried, counted, failed over, with the reason in ``last_error``."""
    seen: list[tuple[str, str, Completion | None]] = []

    def refuse_only_markup(completion: Completion) -> str | None:
        return "the formatter stripped everything" if completion.text == "/me !!!" else None

    async with (
        ScriptedOpenAIServer(default=reply("/me !!!")) as primary,
        ScriptedOpenAIServer(reply("a real answer")) as backup,
    ):
        config = chain(
            {"primary": (primary.base_url, 5.0), "backup": (backup.base_url, 5.0)},
            retry={"attempts": 2, "base_delay_seconds": 0.01},
        )
        manager = build_manager(
            config, session, observer=lambda p, outcome, s, c: seen.append((p, outcome, c))
        )
        answer = await manager.complete(
            REQUEST, deadline=time.monotonic() + 10, accept=refuse_only_markup
        )
        asked = len(primary.completions)
    assert (answer.provider, answer.text) == ("backup", "a real answer")
    assert asked == 2
    health = manager.snapshot()["primary"]
    assert "the formatter stripped everything" in str(health["last_error"])
    assert [(p, outcome) for p, outcome, _ in seen] == [
        ("primary", "UnusableAnswer"),
        ("primary", "UnusableAnswer"),
        ("backup", "ok"),
    ]
    assert seen[0][2] is not None  # the refused answer still cost tokens: metrics see it


async def test_when_every_answer_is_blank_the_caller_gets_unusable_answer(
    session: aiohttp.ClientSession,
) -> None:
    async with ScriptedOpenAIServer(default=reply("  \n ")) as only:
        manager = build_manager(chain({"a": (only.base_url, 5.0)}, retry={"attempts": 1}), session)
        with pytest.raises(UnusableAnswer, match="blank answer"):
            await manager.complete(REQUEST, deadline=time.monotonic() + 10)


def test_a_chain_without_any_built_provider_is_a_config_error() -> None:
    config = LLMConfig()  # the scripted "echo" provider only
    with pytest.raises(ConfigError) as caught:
        ProviderManager({}, config)
    ((where, message, fix),) = caught.value.problems
    assert where == "llm.default_provider"
    assert "echo" in message
    assert fix


async def test_a_call_hanging_right_now_shows_in_the_snapshot(
    session: aiohttp.ClientSession,
) -> None:
    """Before its timeout turns a hang into a counted failure, the call is in the snapshot."""
    async with ScriptedOpenAIServer(default=hang(60)) as only:
        manager = build_manager(chain({"a": (only.base_url, 30.0)}), session)
        call = asyncio.create_task(manager.complete(REQUEST, deadline=time.monotonic() + 40))
        await eventually(lambda: only.completions)  # the server has it: the call is in flight
        busy = manager.snapshot()["a"]
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    assert busy["in_flight"] == 1
    assert isinstance(busy["oldest_call_seconds"], float)
    idle = manager.snapshot()["a"]
    assert (idle["in_flight"], idle["oldest_call_seconds"]) == (0, None)
