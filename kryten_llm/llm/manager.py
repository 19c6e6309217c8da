"""The one door from the pipeline to the providers: they are built, watched and asked here.

The worker asks the manager, never a provider. The manager owns the providers of the ``llm``
section (:func:`build_manager` is the one way to build them), their health (circuit breakers,
cool-downs, calls in flight: :mod:`kryten_llm.llm.health`), their probes and prices. Each
request goes down the chain in :mod:`kryten_llm.llm.chain` (retries, failover, the reply's
deadline, streaming into a sink), which says in full what is retried, when and how long.

The answer names the provider and model that actually answered and, in ``tried``, who failed
before it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from kryten_llm.errors import ConfigError
from kryten_llm.llm.base import create_provider
from kryten_llm.llm.chain import Accept, CallObserver, ChainAsker
from kryten_llm.llm.health import ProviderHealth
from kryten_llm.llm.probe import ProbeResult, probe_one
from kryten_llm.llm.redact import Redactor

if TYPE_CHECKING:
    import aiohttp

    from kryten_llm.config import LLMConfig
    from kryten_llm.llm.base import Completion, CompletionRequest, Provider
    from kryten_llm.llm.streaming import TextSink

__all__ = ["Accept", "CallObserver", "ProviderManager", "build_manager"]


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
        self._config = config
        self._chain = [name for name in config.chain if name in self._providers]
        if not self._chain:
            built = ", ".join(sorted(self._providers)) or "none"
            where, fix = "llm.default_provider", "name a built provider in llm.default_provider"
            problem = f"none of the chain {config.chain} was built (built: {built})"
            raise ConfigError([(where, problem, fix)])
        self._clock = clock
        self.health = {
            name: ProviderHealth(name, config.circuit, clock) for name in self._providers
        }
        self._redact = {
            name: Redactor.for_config(cfg)
            for name, cfg in config.providers.items()
            if name in self._providers
        }
        self._asker = ChainAsker(
            self._providers,
            config,
            chain=self._chain,
            health=self.health,
            redact=self._redact,
            clock=clock,
            jitter=jitter,
            observer=observer,
        )

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
                pause=self._asker.backoff(1),
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
        return await self._asker.ask(request, deadline, chain, accept, None)

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
        return await self._asker.ask(request, deadline, chain, accept, sink)


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
