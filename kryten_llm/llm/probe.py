"""Probing a provider at startup or on demand, and what a probe does to its health.

``kryten-llm providers check``, the service's startup and its periodic re-probe of failing
providers ask :meth:`kryten_llm.llm.manager.ProviderManager.probe_all`, which probes every
provider (or those named) at once through :func:`probe_one`. An answer closes the circuit. A
failed probe counts as a reply's failed call would: an authentication error or an unknown model
marks the provider misconfigured, an exhausted credit or a rate limit cools it down, anything
else (a timeout too) is one failure towards opening its circuit. Error texts are redacted of
the provider's secrets before they are recorded or shown.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from kryten_llm.errors import ProviderError, ProviderTimeout, RateLimited

if TYPE_CHECKING:
    from kryten_llm.llm.base import Provider
    from kryten_llm.llm.health import ProviderHealth
    from kryten_llm.llm.redact import Redactor

log = structlog.get_logger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of probing one provider."""

    name: str
    ok: bool
    detail: str
    latency_ms: float
    model: str


async def probe_one(
    provider: Provider,
    health: ProviderHealth,
    timeout_seconds: float,
    *,
    clock: Callable[[], float],
    redactor: Redactor | None,
    pause: float,
) -> ProbeResult:
    """Probe ``provider`` within ``timeout_seconds`` and record the outcome in ``health``.

    Args:
        provider: the provider to probe.
        health: its health, told about a failure.
        timeout_seconds: the probe's budget.
        clock: monotonic seconds, for the latency.
        redactor: blanks the provider's secrets out of the error text.
        pause: how long a rate limit without ``Retry-After`` cools the provider down.

    Returns:
        Whether it answered, and what it said or why not; the result is logged.
    """
    name = provider.name
    started = clock()
    try:
        detail = await asyncio.wait_for(provider.probe(timeout_seconds), timeout_seconds)
    except (ProviderError, TimeoutError) as exc:
        error = (
            exc
            if isinstance(exc, ProviderError)
            else ProviderTimeout(name, f"probe timed out after {timeout_seconds:g} s")
        )
        if redactor is not None:
            redactor.scrub(error)
        retry_after = error.retry_after if isinstance(error, RateLimited) else None
        health.report(error, pause=retry_after if retry_after is not None else pause)
        ok, detail = False, str(error)
    else:
        ok = True
    result = ProbeResult(name, ok, detail, (clock() - started) * 1000, provider.model)
    if ok:
        health.succeeded(result.latency_ms)  # a re-probe that answers closes the circuit
        log.info("provider_ready", provider=name, model=result.model, detail=detail)
    else:
        log.warning("provider_probe_failed", provider=name, error=detail)
    return result
