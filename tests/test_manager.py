"""The provider manager against real scripted HTTP servers: order, retries, breakers, deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from kryten_llm.config import LLMConfig, ProviderConfig
from kryten_llm.errors import AuthFailed, ProviderTimeout, ProviderUnavailable
from kryten_llm.llm import ChatMessage, CompletionRequest, create_provider
from kryten_llm.llm.manager import ProviderManager
from tests.conftest import eventually
from tests.natsserver import free_port
from tests.openai_server import ScriptedOpenAIServer, hang, reply, status

REQUEST = CompletionRequest(messages=(ChatMessage("user", "hi"),))


class ShiftedClock:
    """Real monotonic time that a test can move forward instead of sleeping (the manager's
    timeouts still run on the event loop's real clock)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def manager(
    session: aiohttp.ClientSession,
    urls: dict[str, str],
    *,
    clock: Callable[[], float] = time.monotonic,
    **llm: Any,
) -> ProviderManager:
    config = LLMConfig(
        providers={name: ProviderConfig(base_url=url, model=name) for name, url in urls.items()},
        default_provider=next(iter(urls)),
        fallback=list(urls)[1:],
        **llm,
    )
    providers = {
        name: create_provider(name, cfg, session) for name, cfg in config.providers.items()
    }
    return ProviderManager(providers, config, clock=clock, jitter=lambda: 0.0)


def soon(seconds: float = 5.0) -> float:
    return time.monotonic() + seconds


FAST = {"retry": {"base_delay_seconds": 0.01, "attempts": 2}}


async def test_5xx_is_retried_then_the_next_provider_answers(
    session: aiohttp.ClientSession,
) -> None:
    async with (
        ScriptedOpenAIServer(status(500), status(502)) as primary,
        ScriptedOpenAIServer(reply("from b")) as secondary,
    ):
        m = manager(session, {"a": primary.base_url, "b": secondary.base_url}, **FAST)
        result = await m.complete(REQUEST, deadline=soon())
    assert (result.text, result.provider, result.tried) == ("from b", "b", ("a",))
    assert len(primary.requests) == 2  # one retry
    assert m.health["a"].consecutive_failures == 2


async def test_401_is_not_retried_and_the_provider_is_skipped_from_then_on(
    session: aiohttp.ClientSession,
) -> None:
    async with (
        ScriptedOpenAIServer(status(401)) as primary,
        ScriptedOpenAIServer() as secondary,
    ):
        m = manager(session, {"a": primary.base_url, "b": secondary.base_url}, **FAST)
        first = await m.complete(REQUEST, deadline=soon())
        second = await m.complete(REQUEST, deadline=soon())
    assert len(primary.requests) == 1
    assert (first.provider, second.provider) == ("b", "b")
    assert m.health["a"].state == "misconfigured"
    assert second.tried == ()  # skipped, not tried


async def test_a_short_retry_after_is_waited_out(session: aiohttp.ClientSession) -> None:
    async with ScriptedOpenAIServer(status(429, headers={"Retry-After": "0.3"})) as llm:
        m = manager(session, {"a": llm.base_url}, **FAST)
        result = await m.complete(REQUEST, deadline=soon())
    assert result.provider == "a"
    first, second = llm.requests
    assert second.received_at - first.received_at >= 0.25


async def test_a_long_retry_after_fails_over_and_cools_the_provider(
    session: aiohttp.ClientSession,
) -> None:
    async with (
        ScriptedOpenAIServer(status(429, headers={"Retry-After": "120"})) as primary,
        ScriptedOpenAIServer() as secondary,
    ):
        m = manager(session, {"a": primary.base_url, "b": secondary.base_url}, **FAST)
        started = time.monotonic()
        await m.complete(REQUEST, deadline=soon())
        await m.complete(REQUEST, deadline=soon())
        assert time.monotonic() - started < 3
    assert len(primary.requests) == 1
    assert m.health["a"].state == "cooling"
    assert 100 < m.health["a"].retry_in() <= 120


async def test_out_of_credit_cools_the_provider_for_long(session: aiohttp.ClientSession) -> None:
    async with ScriptedOpenAIServer(status(402)) as primary, ScriptedOpenAIServer() as secondary:
        m = manager(session, {"a": primary.base_url, "b": secondary.base_url}, **FAST)
        assert (await m.complete(REQUEST, deadline=soon())).provider == "b"
    assert m.health["a"].state == "cooling"
    assert m.health["a"].retry_in() > 3000


async def test_the_circuit_opens_then_lets_one_probe_through(
    session: aiohttp.ClientSession,
) -> None:
    async with (
        ScriptedOpenAIServer(status(500), status(500), reply("back")) as primary,
        ScriptedOpenAIServer() as secondary,
    ):
        clock = ShiftedClock()
        m = manager(
            session,
            {"a": primary.base_url, "b": secondary.base_url},
            clock=clock,
            retry={"attempts": 1},
            circuit={"failure_threshold": 2, "open_seconds": 30},
        )
        await m.complete(REQUEST, deadline=clock() + 5)
        await m.complete(REQUEST, deadline=clock() + 5)
        assert m.health["a"].state == "open"
        skipped = await m.complete(REQUEST, deadline=clock() + 5)
        assert (skipped.provider, len(primary.requests)) == ("b", 2)
        clock.advance(30)  # the open period is over: one probe may go through
        probe = await m.complete(REQUEST, deadline=clock() + 5)
    assert (probe.provider, probe.text) == ("a", "back")
    assert m.health["a"].state == "closed"


async def test_one_deadline_bounds_every_retry_and_fallback(
    session: aiohttp.ClientSession,
) -> None:
    async with (
        ScriptedOpenAIServer(default=hang()) as a,
        ScriptedOpenAIServer(default=hang()) as b,
    ):
        m = manager(session, {"a": a.base_url, "b": b.base_url}, **FAST)
        started = time.monotonic()
        with pytest.raises(ProviderTimeout):
            await m.complete(REQUEST, deadline=soon(0.6))
        assert time.monotonic() - started < 2


async def test_refused_connections_fail_over(session: aiohttp.ClientSession) -> None:
    async with ScriptedOpenAIServer(reply("ok")) as secondary:
        dead = f"http://127.0.0.1:{free_port()}/v1"
        m = manager(session, {"a": dead, "b": secondary.base_url}, **FAST)
        result = await m.complete(REQUEST, deadline=soon())
    assert (result.provider, result.tried) == ("b", ("a",))
    assert m.health["a"].last_error is not None


async def test_when_nothing_can_be_tried_the_error_says_why(
    session: aiohttp.ClientSession,
) -> None:
    async with ScriptedOpenAIServer(status(403)) as only:
        m = manager(session, {"a": only.base_url}, **FAST)
        with pytest.raises(AuthFailed, match="authentication failed"):
            await m.complete(REQUEST, deadline=soon())
        with pytest.raises(ProviderUnavailable, match=r"no provider available \(a misconfigured"):
            await m.complete(REQUEST, deadline=soon())
    snapshot = m.snapshot()["a"]
    assert snapshot["state"] == "misconfigured"
    assert snapshot["error_rate"] == 1.0


async def test_probing_takes_the_served_model_for_auto(session: aiohttp.ClientSession) -> None:
    """``model: "auto"`` becomes the first model the server lists; a good probe keeps the
    circuit closed."""
    async with ScriptedOpenAIServer(models=("qwen2.5-7b", "other")) as llm:
        config = LLMConfig(
            providers={"api": ProviderConfig(base_url=llm.base_url, model="auto")},
            default_provider="api",
        )
        providers = {"api": create_provider("api", config.providers["api"], session)}
        m = ProviderManager(providers, config)
        (result,) = await m.probe_all(2.0)
        answer = await m.complete(REQUEST, deadline=soon())
        sent = llm.requests[-1].json
    assert result.ok
    assert result.model == providers["api"].model == "qwen2.5-7b"
    assert sent is not None
    assert sent["model"] == "qwen2.5-7b"
    assert answer.provider == "api"
    assert m.health["api"].state == "closed"


async def test_a_failed_probe_counts_against_the_provider(session: aiohttp.ClientSession) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    config = LLMConfig(
        providers={"dead": ProviderConfig(base_url=dead)},
        default_provider="dead",
        circuit={"failure_threshold": 1},  # type: ignore[arg-type]
    )
    m = ProviderManager(
        {"dead": create_provider("dead", config.providers["dead"], session)}, config
    )
    (result,) = await m.probe_all(2.0)
    assert not result.ok
    assert "connection failed" in result.detail
    assert m.health["dead"].state == "open"


async def test_cost_comes_from_the_answering_providers_prices(
    session: aiohttp.ClientSession,
) -> None:
    usage = {"prompt_tokens": 1000, "completion_tokens": 500}
    async with ScriptedOpenAIServer(reply("ok", usage=usage)) as llm:
        m = manager(session, {"a": llm.base_url})
        m._config.providers["a"].price_input_per_million = 2.0
        m._config.providers["a"].price_output_per_million = 10.0
        result = await m.complete(REQUEST, deadline=soon())
    assert m.cost(result) == pytest.approx((1000 * 2.0 + 500 * 10.0) / 1_000_000)


def test_providers_check_prints_a_table_and_fails_when_one_is_down(tmp_path: Any) -> None:
    import json
    import subprocess
    import sys

    config = tmp_path / "c.json"
    config.write_text(
        json.dumps(
            {
                "llm": {
                    "providers": {
                        "echo": {"type": "scripted"},
                        "dead": {"base_url": f"http://127.0.0.1:{free_port()}/v1"},
                    },
                    "default_provider": "echo",
                    "fallback": ["dead"],
                }
            }
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "kryten_llm", "providers", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["provider", "type", "model", "status"]
    assert any(line.startswith("echo (default)") and " ready " in line for line in lines)
    assert any(line.startswith("dead (fallback)") and " FAILED " in line for line in lines)


async def test_a_402_at_probe_time_cools_the_provider_instead_of_counting_a_failure(
    session: aiohttp.ClientSession,
) -> None:
    async with ScriptedOpenAIServer() as llm:
        llm.push_models(status(402, {"error": {"message": "Insufficient credits"}}))
        m = manager(session, {"a": llm.base_url})
        (result,) = await m.probe_all(2.0)
    assert not result.ok
    assert "out of credit" in result.detail
    health = m.health["a"]
    assert health.state == "cooling"
    assert health.consecutive_failures == 0
    assert health.retry_in() > 3000  # quota_cooldown_seconds: an hour by default


async def test_a_429_at_probe_time_cools_the_provider_for_its_retry_after(
    session: aiohttp.ClientSession,
) -> None:
    async with ScriptedOpenAIServer() as llm:
        llm.push_models(status(429, headers={"Retry-After": "120"}))
        m = manager(session, {"a": llm.base_url})
        (result,) = await m.probe_all(2.0)
    assert not result.ok
    assert m.health["a"].state == "cooling"
    assert 100 < m.health["a"].retry_in() <= 120


async def test_a_400_fails_this_request_over_and_the_provider_stays_in_use(
    session: aiohttp.ClientSession,
) -> None:
    """A content filter or a prompt over the context refuses one request, not the provider."""
    async with (
        ScriptedOpenAIServer(status(400), reply("primary again")) as primary,
        ScriptedOpenAIServer(reply("from b")) as secondary,
    ):
        m = manager(session, {"a": primary.base_url, "b": secondary.base_url}, **FAST)
        first = await m.complete(REQUEST, deadline=soon())
        assert m.health["a"].consecutive_failures == 1
        second = await m.complete(REQUEST, deadline=soon())
    assert (first.provider, first.tried) == ("b", ("a",))
    assert second.provider == "a"
    assert second.text == "primary again"
    assert m.health["a"].state == "closed"
    assert m.health["a"].consecutive_failures == 0


async def test_a_cancelled_trial_call_does_not_hold_the_half_open_slot(
    session: aiohttp.ClientSession,
) -> None:
    """The one call allowed through a half-open circuit is cancelled (a reply's deadline):
    the next request may try the provider again instead of skipping it for good."""
    async with (
        ScriptedOpenAIServer(status(500), hang(30), reply("back")) as primary,
        ScriptedOpenAIServer() as secondary,
    ):
        clock = ShiftedClock()
        m = manager(
            session,
            {"a": primary.base_url, "b": secondary.base_url},
            clock=clock,
            retry={"attempts": 1},
            circuit={"failure_threshold": 1, "open_seconds": 30},
        )
        await m.complete(REQUEST, deadline=clock() + 5)
        assert m.health["a"].state == "open"
        clock.advance(30)
        trial = asyncio.create_task(m.complete(REQUEST, deadline=clock() + 5))
        await eventually(lambda: len(primary.requests) == 2)
        trial.cancel()
        with pytest.raises(asyncio.CancelledError):
            await trial
        again = await m.complete(REQUEST, deadline=clock() + 5)
    assert (again.provider, again.text) == ("a", "back")


async def test_a_provider_that_failed_is_probed_again_and_recovers(
    session: aiohttp.ClientSession,
) -> None:
    """Health does not wait for a mention: a failing provider is re-probed until it answers."""
    async with ScriptedOpenAIServer() as llm:
        llm.push_models(status(500))
        m = manager(session, {"a": llm.base_url}, **FAST)
        await m.probe_all(1.0)
        assert m.health["a"].consecutive_failures == 1
        assert m.needing_probe() == ["a"]
        watcher = asyncio.create_task(m.reprobe_failing(interval=0.05))
        try:
            await eventually(lambda: m.health["a"].consecutive_failures == 0)
        finally:
            watcher.cancel()
    assert m.health["a"].state == "closed"
    assert m.needing_probe() == []
