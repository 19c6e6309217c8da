"""Ask one request down the provider chain: retries, failover, budgets, streaming.

The manager (:mod:`kryten_llm.llm.manager`) owns the providers, their health and their probes;
every request it is given is asked here, the same way whether it is streamed or not. For each
provider of the chain (the default, then ``llm.fallback``), skipping those whose circuit is
open, that are cooling down or misconfigured:

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

Streaming: a provider that streams hands its text to the caller's sink as it is written
(:mod:`kryten_llm.llm.streaming`); the same retries and failovers apply until the sink has
committed a part to be sent, and none after (the answer would start over and repeat its first
sentence): the failure is raised at once.

Every error text is redacted of the provider's secrets (:mod:`kryten_llm.llm.redact`) before it
is recorded (``last_error``), logged or raised.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import structlog

from kryten_llm.errors import (
    BadRequest,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    QuotaExhausted,
    RateLimited,
    UnusableAnswer,
)
from kryten_llm.llm.budget import (
    BACKSTOP_SECONDS,
    MARGIN_SECONDS,
    RESERVE_SECONDS,
    attempt_budget,
)
from kryten_llm.llm.health import CircuitState
from kryten_llm.llm.streaming import read_stream, streams

if TYPE_CHECKING:
    from kryten_llm.config import LLMConfig
    from kryten_llm.llm.base import Completion, CompletionRequest, Provider
    from kryten_llm.llm.health import ProviderHealth
    from kryten_llm.llm.redact import Redactor
    from kryten_llm.llm.streaming import TextSink

log = structlog.get_logger(__name__)

_FIX = "check the provider's base_url, model and API key"

# Told about every provider call: provider, outcome ("ok" or the error's class name), seconds,
# and the completion when there is one (metrics, dashboards; an unusable one cost tokens too).
CallObserver = Callable[[str, str, float, "Completion | None"], None]

# The caller's check of an answer: None when it can be used, else why not.
Accept = Callable[["Completion"], "str | None"]


class ChainAsker:
    """Asks requests down a chain of providers (see the module docstring).

    Args:
        providers: the providers by name.
        config: the ``llm`` section (chain, retry, each provider's timeout).
        chain: the configured order, limited to ``providers``.
        health: each provider's health (shared with the manager).
        redact: each provider's redactor.
        clock: monotonic seconds; deadlines are in its terms.
        jitter: a number in [0, 1) that spreads backoffs.
        observer: told about every provider call.
    """

    def __init__(
        self,
        providers: Mapping[str, Provider],
        config: LLMConfig,
        *,
        chain: list[str],
        health: Mapping[str, ProviderHealth],
        redact: Mapping[str, Redactor],
        clock: Callable[[], float],
        jitter: Callable[[], float],
        observer: CallObserver | None,
    ) -> None:
        self._providers = providers
        self._config = config
        self._chain = chain
        self.health = health
        self._redact = redact
        self._clock = clock
        self._jitter = jitter
        self._observer = observer

    async def ask(
        self,
        request: CompletionRequest,
        deadline: float,
        chain: list[str] | None,
        accept: Accept | None,
        sink: TextSink | None,
    ) -> Completion:
        """The first usable answer of ``chain`` (the configured one when empty); see
        :meth:`ProviderManager.complete <kryten_llm.llm.manager.ProviderManager.complete>`
        and :meth:`~kryten_llm.llm.manager.ProviderManager.stream`.

        Raises:
            ProviderError: every provider failed or was unavailable (the last error).
        """
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
                delay = self.backoff(attempt)
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
        self.health[name].report(exc, pause=pause if pause is not None else self.backoff(1))
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

    def backoff(self, attempt: int) -> float:
        """The pause before try ``attempt + 1``: exponential, capped, spread by jitter."""
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
