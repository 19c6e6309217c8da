"""Ask providers in order, retry what may succeed, and keep within the reply's deadline.

The seam between the pipeline and the providers: the worker asks the manager, never a
provider. For each provider of the chain (the default, then ``llm.fallback``), skipping those
whose circuit is open, that are cooling down or misconfigured:

- a retryable failure (timeout, refused connection, 5xx, garbage, an unusable answer) is
  retried after an exponential backoff with jitter, up to ``retry.attempts`` tries, then the
  next provider is asked; consecutive failures (timeouts included) open the provider's circuit;
- an unusable answer is a 200 whose text is empty or blank, or one the caller's ``accept``
  check refuses (the formatter stripped everything): :class:`~kryten_llm.errors.UnusableAnswer`;
- 429 with a short ``Retry-After`` is waited out and retried; a long one (or none, after the
  retries) cools the provider down until then and fails over at once;
- 402 or an exhausted credit cools the provider down for ``quota_cooldown_seconds``;
- 401/403/404 are never retried: the provider is marked misconfigured, with a log line saying
  what to fix, and skipped from then on;
- 400/413/422 are about one request (a content filter, a prompt over the context): that request
  fails over to the next provider, and the provider stays askable for the next one.

Time: one deadline (the reply's) bounds every call, wait and retry together, and each attempt
has its own budget inside it: ``min(its timeout, time left)``, keeping a reserve of up to 5 s
for each later provider of the chain (:mod:`kryten_llm.llm.budget` has the formula and why).
A timeout is a failure like the others: it counts towards opening the circuit.

Streaming (:meth:`ProviderManager.stream`): a provider that streams hands its text to the
caller's sink as it is written (:mod:`kryten_llm.llm.streaming`); the same retries and
failovers apply until the sink has committed a part to be sent, and none after (the answer
would start over and repeat its first sentence): the failure is raised at once.

Every error text is redacted of the provider's secrets (:mod:`kryten_llm.llm.redact`) before it
is recorded (``last_error``), logged or raised. The answer names the provider and model that
actually answered and, in ``tried``, who failed before it.
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
    BadRequest,
    ConfigError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    QuotaExhausted,
    RateLimited,
    UnusableAnswer,
)
from kryten_llm.llm.base import create_provider
from kryten_llm.llm.budget import (
    BACKSTOP_SECONDS,
    MARGIN_SECONDS,
    RESERVE_SECONDS,
    attempt_budget,
)
from kryten_llm.llm.health import CircuitState, ProviderHealth
from kryten_llm.llm.probe import ProbeResult, probe_one
from kryten_llm.llm.redact import Redactor
from kryten_llm.llm.streaming import read_stream, streams

if TYPE_CHECKING:
    import aiohttp

    from kryten_llm.config import LLMConfig
    from kryten_llm.llm.base import Completion, CompletionRequest, Provider
    from kryten_llm.llm.streaming import TextSink

log = structlog.get_logger(__name__)

_FIX = "check the provider's base_url, model and API key"

# Told about every provider call: provider, outcome ("ok" or the error's class name), seconds,
# and the completion when there is one (metrics, dashboards; an unusable one cost tokens too).
CallObserver = Callable[[str, str, float, "Completion | None"], None]

# The caller's check of an answer: None when it can be used, else why not.
Accept = Callable[["Completion"], "str | None"]


class ProviderManager:
    """Routes completion requests through the provider chain.

    Args:
        providers: the providers by name.
        config: the ``llm`` section (chain, retry, circuit, each provider's timeout).
        clock: monotonic seconds; deadlines are in its terms.
        jitter: a number in [0, 1) that spreads backoffs.
        observer: told about every provider call.

    Raises:
        ConfigError: no provider of the configured chain is among ``providers``.
    """

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
            built = ", ".join(sorted(self._providers)) or "none"
            where, fix = "llm.default_provider", "name a built provider in llm.default_provider"
            problem = f"none of the chain {config.chain} was built (built: {built})"
            raise ConfigError([(where, problem, fix)])
        self._clock = clock
        self._jitter = jitter
        self.health = {
            name: ProviderHealth(name, config.circuit, clock) for name in self._providers
        }
        self._redact = {
            name: Redactor.for_config(cfg)
            for name, cfg in config.providers.items()
            if name in self._providers
        }

    @property
    def providers(self) -> Mapping[str, Provider]:
        """The providers by name."""
        return self._providers

    @property
    def chain(self) -> list[str]:
        """The configured order, limited to the providers that exist."""
        return list(self._chain)

    def snapshot(self) -> dict[str, dict[str, object]]:
        """Every provider's health, for heartbeats and operator surfaces.

        Returns:
            By provider: ``state`` (closed, open, half_open, cooling, misconfigured),
            ``retry_in``, ``last_error``, ``last_error_kind``, ``consecutive_failures``,
            ``timeouts``, ``in_flight``, ``oldest_call_seconds``, ``latency_ms``,
            ``error_rate`` and ``calls``.
        """
        return {name: health.snapshot() for name, health in self.health.items()}

    async def probe_all(
        self, timeout_seconds: float = 5.0, *, names: Iterable[str] | None = None
    ) -> list[ProbeResult]:
        """Probe every provider (or those ``names``) at once; failures become their health.

        Args:
            timeout_seconds: the budget of each probe.
            names: the providers to probe; all of them when None.

        Returns:
            One result per provider, in the order asked (see :func:`probe_one`).
        """
        chosen = list(self._providers) if names is None else list(names)
        probes = (
            probe_one(
                self._providers[name],
                self.health[name],
                timeout_seconds,
                clock=self._clock,
                redactor=self._redact.get(name),
                pause=self._backoff(1),
            )
            for name in chosen
        )
        return list(await asyncio.gather(*probes))

    async def reprobe_failing(self, interval: float = 30.0) -> None:
        """Forever: every ``interval`` seconds, probe the providers whose last call failed, so
        health sees them come back (or stay down) without waiting for someone to ask."""
        while True:
            await asyncio.sleep(interval)
            names = self.needing_probe()
            if names:
                await self.probe_all(names=names)

    def needing_probe(self) -> list[str]:
        """Providers whose last call failed and that may be asked now (not misconfigured):
        a probe finds out whether they are back, so health does not wait for a mention."""
        return [
            name
            for name, health in self.health.items()
            if health.consecutive_failures and health.askable()
        ]

    def cost(self, completion: Completion) -> float | None:
        """The price of a completion in USD from the answering provider's prices, if set.

        Args:
            completion: an answer.

        Returns:
            USD, or None when the provider has no prices or reported no usage.
        """
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
        accept: Accept | None = None,
    ) -> Completion:
        """The first usable answer from the chain, before ``deadline`` (a monotonic time).

        Args:
            request: what to ask; its ``timeout_seconds``, when set, replaces each
                provider's configured timeout as the cap of one attempt.
            deadline: when the whole request must be over, in the manager's clock.
            chain: overrides the configured order for this request (a trigger's providers).
            accept: the caller's check of an answer: a reason string makes the answer an
                :class:`~kryten_llm.errors.UnusableAnswer` (retried, counted, failed over).

        Returns:
            The answer, naming who gave it and, in ``tried``, who failed before.

        Raises:
            ProviderError: every provider failed or was unavailable; the last error is raised
                (a ProviderUnavailable naming why when none could even be tried).
        """
        return await self._ask_chain(request, deadline, chain, accept, None)

    async def stream(
        self,
        request: CompletionRequest,
        *,
        deadline: float,
        sink: TextSink,
        chain: list[str] | None = None,
        accept: Accept | None = None,
    ) -> Completion:
        """As :meth:`complete`, handing the text to ``sink`` while a provider writes it.

        Providers that do not stream (or have ``stream: false``) answer as in
        :meth:`complete`, without the sink. ``accept`` judges an answer only while the sink
        has committed nothing.

        Returns:
            The answer (``streamed`` when it came piece by piece); the text so far when the
            sink stopped the stream.

        Raises:
            ProviderError: as :meth:`complete`; once ``sink.committed``, the first failure,
                without a retry or another provider.
        """
        return await self._ask_chain(request, deadline, chain, accept, sink)

    async def _ask_chain(
        self,
        request: CompletionRequest,
        deadline: float,
        chain: list[str] | None,
        accept: Accept | None,
        sink: TextSink | None,
    ) -> Completion:
        tried: list[str] = []
        last: ProviderError | None = None
        order = [n for n in chain if n in self._providers] if chain else self._chain
        for index, name in enumerate(order):
            health = self.health[name]
            if not health.available():
                log.debug("provider_skipped", provider=name, state=str(health.state))
                continue
            tried.append(name)
            try:
                completion = await self._with_retries(
                    name, request, deadline, order[index + 1 :], accept, sink
                )
            except ProviderError as exc:
                last = exc
                if self._clock() >= deadline or (sink is not None and sink.committed):
                    break
                continue
            finally:  # a cancelled or out-of-time trial call must not hold the half-open slot
                health.release()
            return dataclasses.replace(completion, tried=tuple(tried[:-1]))
        if last is not None:
            raise last
        states = ", ".join(f"{n} {self.health[n].state!s}" for n in order)
        raise ProviderUnavailable(order[0], f"no provider available ({states})")

    def _timeout_of(self, name: str) -> float:
        cfg = self._config.providers.get(name)
        return cfg.timeout_seconds if cfg is not None else RESERVE_SECONDS

    async def _with_retries(
        self,
        name: str,
        request: CompletionRequest,
        deadline: float,
        later: list[str],
        accept: Accept | None,
        sink: TextSink | None,
    ) -> Completion:
        retry = self._config.retry
        attempt = 0
        while True:
            attempt += 1
            left = deadline - self._clock() - MARGIN_SECONDS
            if left <= 0:
                raise ProviderTimeout(name, "no time left in the reply deadline")
            own = request.timeout_seconds or self._timeout_of(name)
            waiting = [self._timeout_of(n) for n in later if self.health[n].askable()]
            budget = attempt_budget(own, left, waiting)
            try:
                completion = await self._call(name, request, budget, accept, sink)
            except RateLimited as exc:
                wait = exc.retry_after
                short = wait is not None and wait <= retry.max_retry_after_seconds
                if short and attempt < retry.attempts and self._fits(wait, deadline):
                    log.info("provider_rate_limited_waiting", provider=name, seconds=wait)
                    await asyncio.sleep(wait or 0)
                    continue
                self._record_failure(name, exc, attempt_left=False)
                raise
            except ProviderError as exc:
                delay = self._backoff(attempt)
                again = (
                    exc.retryable
                    and attempt < retry.attempts
                    and self._fits(delay, deadline)
                    and not (sink is not None and sink.committed)
                )
                self._record_failure(name, exc, attempt_left=again, attempt=attempt)
                if not again or self.health[name].state == CircuitState.OPEN:
                    raise
                await asyncio.sleep(delay)
                continue
            self.health[name].succeeded(completion.latency_ms)
            return completion

    def _record_failure(
        self, name: str, exc: ProviderError, *, attempt_left: bool, attempt: int = 1
    ) -> None:
        """Tell ``name``'s health about a failure (already redacted) and log it once."""
        pause = exc.retry_after if isinstance(exc, RateLimited) else None
        self.health[name].report(exc, pause=pause if pause is not None else self._backoff(1))
        error, kind = str(exc), type(exc).__name__
        if self.health[name].state == CircuitState.MISCONFIGURED:
            log.error("provider_misconfigured", provider=name, error=error, fix=_FIX)
        elif isinstance(exc, BadRequest):
            log.warning("provider_refused_request", provider=name, error=error, kind=kind)
        elif isinstance(exc, QuotaExhausted):
            log.error("provider_out_of_credit", provider=name, error=error)
        elif isinstance(exc, RateLimited):
            log.warning("provider_rate_limited", provider=name, retry_after=exc.retry_after)
        else:
            fields = {"attempt": attempt, "kind": kind, "retrying": attempt_left}
            log.warning("provider_failed", provider=name, error=error, **fields)

    async def _call(
        self,
        name: str,
        request: CompletionRequest,
        budget: float,
        accept: Accept | None,
        sink: TextSink | None = None,
    ) -> Completion:
        """One attempt within ``budget``, reported to the observer whatever its outcome;
        streamed into ``sink`` when there is one and the provider streams.

        Raises:
            ProviderError: the provider's (redacted), ProviderTimeout when it ignored its
                budget, UnusableAnswer when the answer cannot be used.
        """
        provider, health = self._providers[name], self.health[name]
        started, token = self._clock(), health.call_started()
        try:
            async with asyncio.timeout(budget + BACKSTOP_SECONDS):
                asked = dataclasses.replace(request, timeout_seconds=budget)
                if sink is not None and streams(provider):
                    completion = await read_stream(provider, asked, sink, clock=self._clock)
                else:
                    completion = await provider.complete(asked)
        except ProviderError as exc:
            self._observe(name, type(exc).__name__, started, None)
            raise self._scrub(name, exc) from None
        except TimeoutError:
            self._observe(name, "ProviderTimeout", started, None)
            raise ProviderTimeout(name, f"no answer within {budget:g} s") from None
        except asyncio.CancelledError:  # the reply's deadline or a shutdown
            self._observe(name, "cancelled", started, None)
            raise
        except Exception:
            self._observe(name, "internal_error", started, None)
            raise
        finally:
            health.call_ended(token)
        reason = None if sink is not None and sink.committed else _unusable(completion, accept)
        if reason is not None:
            self._observe(name, "UnusableAnswer", started, completion)
            raise self._scrub(name, UnusableAnswer(name, f"unusable answer: {reason}"))
        self._observe(name, "ok", started, completion)
        return completion

    def _scrub(self, name: str, exc: ProviderError) -> ProviderError:
        redactor = self._redact.get(name)
        return redactor.scrub(exc) if redactor is not None else exc

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


def _unusable(completion: Completion, accept: Accept | None) -> str | None:
    """Why ``completion`` cannot be used, or None: blank text, or the caller's reason."""
    if not completion.text.strip():
        return "empty answer" if not completion.text else "blank answer"
    if accept is None:
        return None
    return accept(completion)


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

    Returns:
        The manager, with every configured provider.

    Raises:
        KeyError: a provider's type is not registered.
        ConfigError: no provider of the chain exists.
    """
    providers: dict[str, Provider] = {}
    for name, cfg in config.providers.items():
        provider = create_provider(name, cfg, session)
        providers[name] = wrap(name, provider) if wrap is not None else provider
    return ProviderManager(providers, config, observer=observer)
