"""Ask providers in order, retry what may succeed, and keep within the reply's deadline.

The seam between the pipeline and the providers: the worker asks the manager, never a
provider. For each provider of the chain (the default, then ``llm.fallback``), skipping those
whose circuit is open, that are cooling down or misconfigured:

- a retryable failure (timeout, refused connection, 5xx, garbage) is retried after an
  exponential backoff with jitter, up to ``retry.attempts`` tries, then the next provider is
  asked; consecutive failures open the provider's circuit;
- 429 with a short ``Retry-After`` is waited out and retried; a long one (or none, after the
  retries) cools the provider down until then and fails over at once;
- 402 or an exhausted credit cools the provider down for ``quota_cooldown_seconds``;
- 401/403/400/404/422 are never retried: the provider is marked misconfigured, with a log line
  saying what to fix, and skipped from then on.

One deadline (the reply's) bounds every call, wait and retry together. The answer names the
provider and model that actually answered and, in ``tried``, who failed before it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

import structlog

from kryten_llm.errors import (
    AuthFailed,
    BadRequest,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    QuotaExhausted,
    RateLimited,
)
from kryten_llm.llm.base import create_provider
from kryten_llm.llm.health import ProviderHealth

if TYPE_CHECKING:
    import aiohttp

    from kryten_llm.config import LLMConfig
    from kryten_llm.llm.base import Completion, CompletionRequest, Provider

log = structlog.get_logger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of probing one provider."""

    name: str
    ok: bool
    detail: str
    latency_ms: float
    model: str


# Told about every provider call: provider, outcome ("ok" or the error's class name), seconds,
# and the completion when there is one (metrics, dashboards).
CallObserver = Callable[[str, str, float, "Completion | None"], None]


class ProviderManager:
    """Routes completion requests through the provider chain."""

    def __init__(
        self,
        providers: Mapping[str, Provider],
        config: LLMConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        observer: CallObserver | None = None,
    ) -> None:
        self._providers = dict(providers)
        self._observer = observer
        self._config = config
        self._chain = [name for name in config.chain if name in self._providers]
        if not self._chain:
            raise KeyError(config.default_provider)
        self._clock = clock
        self._jitter = jitter
        self.health = {
            name: ProviderHealth(name, config.circuit, clock) for name in self._providers
        }

    @property
    def providers(self) -> Mapping[str, Provider]:
        return self._providers

    @property
    def chain(self) -> list[str]:
        return list(self._chain)

    def snapshot(self) -> dict[str, dict[str, object]]:
        """Every provider's health, for heartbeats and operator surfaces."""
        return {name: health.snapshot() for name, health in self.health.items()}

    async def probe_all(
        self, timeout_seconds: float = 5.0, *, names: Iterable[str] | None = None
    ) -> list[ProbeResult]:
        """Probe every provider (or those ``names``) at once; failures become their health.

        An authentication or request error marks the provider misconfigured, an exhausted
        credit or a rate limit cools it down as a reply's call would, anything else counts as
        one failure. Each result is logged.
        """

        async def one(name: str) -> ProbeResult:
            started = self._clock()
            try:
                detail = await asyncio.wait_for(
                    self._providers[name].probe(timeout_seconds), timeout_seconds
                )
            except (AuthFailed, BadRequest) as exc:
                self.health[name].misconfigured(str(exc))
                ok, detail = False, str(exc)
            except QuotaExhausted as exc:
                self.health[name].cool(self._config.circuit.quota_cooldown_seconds, str(exc))
                ok, detail = False, str(exc)
            except RateLimited as exc:
                self.health[name].cool(exc.retry_after or self._backoff(1), str(exc))
                ok, detail = False, str(exc)
            except (ProviderError, TimeoutError) as exc:
                self.health[name].failed(str(exc) or "probe timed out")
                ok, detail = False, str(exc) or "probe timed out"
            else:
                ok = True
            result = ProbeResult(
                name, ok, detail, (self._clock() - started) * 1000, self._providers[name].model
            )
            if ok:
                log.info("provider_ready", provider=name, model=result.model, detail=detail)
            else:
                log.warning("provider_probe_failed", provider=name, error=detail)
            return result

        chosen = list(self._providers) if names is None else list(names)
        return list(await asyncio.gather(*(one(name) for name in chosen)))

    def cost(self, completion: Completion) -> float | None:
        """The price of a completion in USD from the answering provider's prices, if set."""
        cfg = self._config.providers.get(completion.provider)
        if cfg is None or completion.usage is None:
            return None
        if not (cfg.price_input_per_million or cfg.price_output_per_million):
            return None
        usage = completion.usage
        return (
            usage.prompt_tokens * cfg.price_input_per_million
            + usage.completion_tokens * cfg.price_output_per_million
        ) / 1_000_000

    async def complete(
        self,
        request: CompletionRequest,
        *,
        deadline: float,
        chain: list[str] | None = None,
    ) -> Completion:
        """The first good answer from the chain, before ``deadline`` (a monotonic time).

        ``chain`` overrides the configured order for this request (a trigger's own providers).

        Raises:
            ProviderError: every provider failed or was unavailable; the last error is raised
                (a ProviderUnavailable naming why when none could even be tried).
        """
        tried: list[str] = []
        last: ProviderError | None = None
        order = [n for n in chain if n in self._providers] if chain else self._chain
        for name in order:
            health = self.health[name]
            if not health.available():
                log.debug("provider_skipped", provider=name, state=health.state)
                continue
            tried.append(name)
            try:
                completion = await self._with_retries(name, request, deadline)
            except ProviderError as exc:
                last = exc
                if self._clock() >= deadline:
                    break
                continue
            return dataclasses.replace(completion, tried=tuple(tried[:-1]))
        if last is not None:
            raise last
        states = ", ".join(f"{n} {self.health[n].state}" for n in order)
        raise ProviderUnavailable(order[0], f"no provider available ({states})")

    async def _with_retries(
        self, name: str, request: CompletionRequest, deadline: float
    ) -> Completion:
        provider = self._providers[name]
        health = self.health[name]
        retry = self._config.retry
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise ProviderTimeout(name, "no time left in the reply deadline")
            budget = min(remaining, request.timeout_seconds or remaining)
            try:
                completion = await self._call(
                    name, provider, dataclasses.replace(request, timeout_seconds=budget)
                )
            except (AuthFailed, BadRequest) as exc:
                health.misconfigured(str(exc))
                log.error(
                    "provider_misconfigured",
                    provider=name,
                    error=str(exc),
                    fix="check the provider's base_url, model and API key",
                )
                raise
            except QuotaExhausted as exc:
                health.cool(self._config.circuit.quota_cooldown_seconds, str(exc))
                log.error("provider_out_of_credit", provider=name, error=str(exc))
                raise
            except RateLimited as exc:
                wait = exc.retry_after
                short = wait is not None and wait <= retry.max_retry_after_seconds
                if short and attempt < retry.attempts and self._fits(wait, deadline):
                    log.info("provider_rate_limited_waiting", provider=name, seconds=wait)
                    await asyncio.sleep(wait or 0)
                    continue
                health.cool(wait if wait is not None else self._backoff(1), str(exc))
                log.warning("provider_rate_limited", provider=name, retry_after=wait)
                raise
            except ProviderError as exc:  # retryable: timeouts, refused, 5xx, garbage
                health.failed(str(exc))
                log.warning("provider_failed", provider=name, attempt=attempt, error=str(exc))
                delay = self._backoff(attempt)
                if attempt >= retry.attempts or not self._fits(delay, deadline):
                    raise
                if health.state == "open":
                    raise
                await asyncio.sleep(delay)
                continue
            health.succeeded(completion.latency_ms)
            return completion

    async def _call(self, name: str, provider: Provider, request: CompletionRequest) -> Completion:
        """One provider call, reported to the observer whatever its outcome."""
        started = self._clock()
        try:
            completion = await provider.complete(request)
        except ProviderError as exc:
            self._observe(name, type(exc).__name__, started, None)
            raise
        except asyncio.CancelledError:  # the reply's deadline or a shutdown
            self._observe(name, "cancelled", started, None)
            raise
        except Exception:
            self._observe(name, "internal_error", started, None)
            raise
        self._observe(name, "ok", started, completion)
        return completion

    def _observe(
        self, name: str, outcome: str, started: float, completion: Completion | None
    ) -> None:
        if self._observer is None:
            return
        try:
            self._observer(name, outcome, self._clock() - started, completion)
        except Exception:  # metrics must never break a reply
            log.exception("call_observer_failed", provider=name)

    def _backoff(self, attempt: int) -> float:
        retry = self._config.retry
        delay = min(retry.base_delay_seconds * 2.0 ** (attempt - 1), retry.max_delay_seconds)
        return delay * (0.5 + self._jitter() / 2)

    def _fits(self, seconds: float | None, deadline: float) -> bool:
        """Whether waiting ``seconds`` still leaves time to ask again before the deadline."""
        return self._clock() + (seconds or 0) < deadline


def build_manager(
    config: LLMConfig,
    session: aiohttp.ClientSession,
    *,
    wrap: Callable[[str, Provider], Provider] | None = None,
    observer: CallObserver | None = None,
) -> ProviderManager:
    """The one way to turn the ``llm`` section into providers behind a manager.

    Args:
        config: the ``llm`` section (providers, chain, retry, circuit).
        session: the HTTP session every API provider shares (closed by the caller).
        wrap: called with each provider as built, returns what the manager uses instead
            (batch paces its providers this way).
        observer: told about every provider call (metrics, dashboards).
    """
    providers: dict[str, Provider] = {}
    for name, cfg in config.providers.items():
        provider = create_provider(name, cfg, session)
        providers[name] = wrap(name, provider) if wrap is not None else provider
    return ProviderManager(providers, config, observer=observer)
