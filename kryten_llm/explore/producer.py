"""One producer of the topic explorer: asks its provider for new items, again and again.

Producers are the explorer's workers. Each is bound to one provider (several producers may
share one) and loops: build a prompt from the topic and the current digest of known items
(:mod:`kryten_llm.explore.digest`), ask through the :class:`ProviderManager` (which owns
retries, backoff and the circuit breaker) with that provider as the only link of the chain, and
hand the answer to the explorer, which parses and checks it. A fatal provider error (bad key,
bad model, no credit) ends the producer; a retryable one is waited out with a growing pause,
and too many in a row end it too.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from kryten_llm.errors import ProviderError
from kryten_llm.llm.base import ChatMessage, Completion, CompletionRequest

if TYPE_CHECKING:
    from kryten_llm.llm.manager import ProviderManager

log = structlog.get_logger(__name__)

SYSTEM_PROMPT = (
    "You are a meticulous list maker who knows a great deal. You answer with list items only: "
    "one item per line, no numbering, no bullets, no commentary, no introduction."
)
MAX_BACKOFF_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class ProducerConfig:
    """What every producer of a run shares."""

    topic: str
    batch: int = 20
    request_timeout: float = 60.0
    max_tokens: int | None = None
    instructions: str = ""
    iterations: int | None = None  # requests per producer in this session; None: no limit
    max_consecutive_failures: int = 5
    backoff_seconds: float = 1.0


class ProducerStatus(enum.StrEnum):
    """Where one producer is; assigned only by :func:`run_producer`."""

    IDLE = "idle"  # not started yet
    RUNNING = "running"
    DONE = "done"  # out of iterations
    FAILED = "failed"  # a fatal error, or too many retryable ones in a row
    STOPPED = "stopped"  # the run is stopping


@dataclass(slots=True)
class ProducerState:
    """One producer's progress, shown in snapshots."""

    name: str
    provider: str
    iteration: int = 0  # requests made, over every session of the run
    session_requests: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    state: ProducerStatus = ProducerStatus.IDLE
    last_error: str | None = None
    counted_requests: int = 0  # the part of session_requests already in the run's counters
    counted_failures: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "provider": self.provider,
            "iteration": self.iteration,
            "failures": self.failures,
            "state": self.state.value,
            "last_error": self.last_error,
        }


def build_messages(config: ProducerConfig, digest: str) -> tuple[ChatMessage, ...]:
    """The request of one iteration: the topic, what is known, and what to ask for.

    Args:
        config: the run's producer settings.
        digest: :meth:`kryten_llm.explore.digest.Digest.render` output (may be empty).

    Returns:
        A system and a user message.
    """
    system = SYSTEM_PROMPT + (f"\n{config.instructions}" if config.instructions else "")
    parts = [f"Topic: {config.topic}"]
    if digest:
        parts.append(digest)
        parts.append(
            f"List {config.batch} more items on this topic that are NOT among the known items "
            "and are not variants of them. Prefer less obvious ones. One item per line."
        )
    else:
        parts.append(f"List {config.batch} items on this topic. One item per line.")
    return (ChatMessage("system", system), ChatMessage("user", "\n\n".join(parts)))


async def run_producer(
    state: ProducerState,
    config: ProducerConfig,
    manager: ProviderManager,
    *,
    digest: Callable[[], str],
    ingest: Callable[[ProducerState, Completion], None],
    discard: Callable[[ProducerState, Completion], None],
    stopping: Callable[[], bool],
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Ask ``state.provider`` for items until told to stop, out of iterations, or failed.

    Args:
        state: this producer's counters, updated in place.
        config: the shared settings.
        manager: asks the provider (retries and breaker included).
        digest: renders the current digest of known items.
        ingest: takes an answer (called synchronously, so one answer is checked at a time).
        discard: takes an answer that arrived after the stop: its items are not wanted, but
            its tokens and cost were paid for.
        stopping: true once the run is stopping.
        clock: monotonic time, for deadlines.
    """
    max_tokens = config.max_tokens or min(4096, max(256, config.batch * 24))
    state.state = ProducerStatus.RUNNING
    while not stopping():
        if config.iterations is not None and state.session_requests >= config.iterations:
            state.state = ProducerStatus.DONE
            return
        state.iteration += 1
        state.session_requests += 1
        request = CompletionRequest(
            messages=build_messages(config, digest()),
            max_tokens=max_tokens,
            timeout_seconds=config.request_timeout,
        )
        try:
            completion = await manager.complete(
                request, deadline=clock() + config.request_timeout, chain=[state.provider]
            )
        except ProviderError as exc:
            state.failures += 1
            state.consecutive_failures += 1
            state.last_error = str(exc)
            log.warning("explore_request_failed", producer=state.name, error=str(exc))
            if not exc.retryable or state.consecutive_failures >= config.max_consecutive_failures:
                state.state = ProducerStatus.FAILED
                return
            pause = config.backoff_seconds * 2 ** (state.consecutive_failures - 1)
            await asyncio.sleep(min(pause, MAX_BACKOFF_SECONDS))
            continue
        state.consecutive_failures = 0
        if stopping():
            discard(state, completion)
            break
        ingest(state, completion)
        # An instant provider (scripted, a cache) never suspends: yield to the loop so that
        # progress, checkpoints, signals and a dashboard stop still run.
        await asyncio.sleep(0)
    state.state = ProducerStatus.STOPPED
