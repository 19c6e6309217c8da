"""How a unit of work is asked: one row, several rows packed in one request, or a chat line.

The three strategies of a batch worker, over one :class:`~kryten_llm.llm.manager.ProviderManager`
(retries, backoff, Retry-After, circuit breaker):

- plain: one row, one request; with ``--expect-json`` the answer is checked and re-asked
  with a nudge until it is valid or the re-asks run out;
- packed (``--rows-per-request``): several rows in one request, answered by key; rows the
  answer misses or gets wrong are asked again alone;
- chat lines (``--pipeline``): the live bot's reply path, through
  :class:`~kryten_llm.batch.chatlines.ChatLinePipeline`.

Every strategy takes the pacing slot before the reply's deadline starts, and waits out open
circuits and cool-downs a few times before giving an item up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence

import structlog

from kryten_llm.batch.chatlines import ChatLinePipeline, item_answer
from kryten_llm.batch.packing import packed_request, unpack
from kryten_llm.batch.plan import BatchPlan
from kryten_llm.batch.ratelimit import RequestPacer, count_requests, prepay
from kryten_llm.batch.storetypes import ItemResult
from kryten_llm.batch.targets import Target
from kryten_llm.batch.usage import Answer, Attempt, Usage
from kryten_llm.batch.work import Unit, WorkItem
from kryten_llm.errors import BadRequest, ProviderError
from kryten_llm.llm.base import ChatMessage, Completion, CompletionRequest
from kryten_llm.llm.manager import ProviderManager

log = structlog.get_logger(__name__)

CIRCUIT_ROUNDS = 5  # times an item waits for an open circuit / cool-down before failing


class Asker:
    """Asks units of work and returns their results (never raises for a provider failure).

    Args:
        plan: the checked batch (options, prompts, JSON expectation).
        manager: the providers, already paced.
        pacers: the pacers of each provider, by name (the first slot is taken up front).
        pipeline: the live reply path, in ``--pipeline`` mode.
    """

    def __init__(
        self,
        plan: BatchPlan,
        manager: ProviderManager,
        pacers: Mapping[str, Sequence[RequestPacer]],
        pipeline: ChatLinePipeline | None = None,
    ) -> None:
        self.plan = plan
        self.options = plan.options
        self._manager = manager
        self._pacers = pacers
        self._pipeline = pipeline
        self._answered_by: set[str] = set()
        system = plan.system()
        self._base = (ChatMessage("system", system),) if system else ()

    async def ask(self, unit: Unit) -> list[ItemResult]:
        """The results of every row of ``unit``, by the strategy the options chose."""
        if self._pipeline is not None:
            return [await self._ask_chat(unit.target, unit.items[0])]
        if len(unit.items) > 1:
            return await self._ask_packed(unit.target, unit.items)
        return [await self._ask_one(unit.target, unit.items[0])]

    # ---- strategies

    async def _ask_one(self, target: Target, item: WorkItem) -> ItemResult:
        """Ask one row; with ``--expect-json`` re-ask (with a nudge) until it is valid."""
        requests = count_requests()
        await prepay(self._pacers.get(target.chain[0], []))
        attempt = Attempt(item, target)
        deadline = time.monotonic() + self.options.timeout_seconds
        expectation = self.plan.expectation
        messages = (*self._base, ChatMessage("user", item.prompt))
        tries = 1 + (self.options.json_retries if expectation is not None else 0)
        reason = ""
        for _ in range(tries):
            try:
                completion = await self._complete(target, self._request(messages), deadline)
            except ProviderError as exc:
                return attempt.finish(Answer.failed(str(exc)), requests=requests[0])
            attempt.usage.add(completion, self._manager.cost(completion))
            if expectation is None:
                return attempt.finish(Answer.done(completion.text), requests=requests[0])
            found = expectation.check(completion.text)
            if found is None:
                text = expectation.normalise(completion.text)
                return attempt.finish(Answer.done(text), requests=requests[0])
            reason = found
            messages = (
                *messages,
                ChatMessage("assistant", completion.text),
                ChatMessage("user", expectation.nudge(found)),
            )
        error = f"answer is {reason} (after {tries} tries)"
        return attempt.finish(Answer.failed(error), requests=requests[0])

    async def _ask_packed(self, target: Target, items: Sequence[WorkItem]) -> list[ItemResult]:
        """Ask several rows in one request; rows it does not answer well are asked alone."""
        requests = count_requests()
        await prepay(self._pacers.get(target.chain[0], []))
        started = time.time()
        deadline = time.monotonic() + self.options.timeout_seconds
        keys = [str(item.row_key) for item in items]
        expectation = self.plan.expectation
        request = packed_request(
            self.plan.system(),
            [(key, item.prompt) for key, item in zip(keys, items, strict=True)],
            expect_json=expectation is not None,
        )
        try:
            completion = await self._complete(target, self._request(request.messages), deadline)
        except ProviderError as exc:
            if not exc.retryable:  # asking row by row cannot fix the request or the key
                return [
                    Attempt(item, target, started=started).finish(
                        Answer.failed(str(exc)), requests=requests[0]
                    )
                    for item in items
                ]
            completion = None
        answers = unpack(completion.text, keys).answers if completion is not None else {}
        good = {
            key: answer
            for key, answer in answers.items()
            if expectation is None or expectation.check(answer) is None
        }
        share = Usage()
        if completion is not None:
            share.add(completion, self._manager.cost(completion), parts=max(len(good), 1))
        results: list[ItemResult] = []
        sent = requests[0]
        for key, item in zip(keys, items, strict=True):
            if key in good:
                text = good[key] if expectation is None else expectation.normalise(good[key])
                # The packed request is counted once, on the first row it answered.
                attempt = Attempt(item, target, usage=share, started=started)
                results.append(attempt.finish(Answer.done(text), requests=sent))
                sent = 0
        redo = [item for key, item in zip(keys, items, strict=True) if key not in good]
        if redo:
            log.info("batch_pack_split", target=target.label, rows=len(redo), of=len(items))
        for item in redo:
            result = await self._ask_one(target, item)
            result.attempts += sent
            sent = 0
            results.append(result)
        return results

    async def _ask_chat(self, target: Target, item: WorkItem) -> ItemResult:
        """Answer one chat line through the live reply path."""
        assert self._pipeline is not None
        requests = count_requests()
        await prepay(self._pacers.get(target.chain[0], []))
        started = time.time()
        result = await self._pipeline.answer(item.username, item.prompt, target.chain)
        attempt = Attempt(item, target, usage=Usage.of_outcome(result), started=started)
        return attempt.finish(item_answer(result), requests=requests[0])

    # ---- one completion

    def _request(self, messages: tuple[ChatMessage, ...]) -> CompletionRequest:
        return CompletionRequest(
            messages=messages,
            max_tokens=self.options.max_tokens,
            temperature=self.options.temperature,
        )

    async def _complete(
        self, target: Target, request: CompletionRequest, deadline: float
    ) -> Completion:
        """The manager's answer; waits out open circuits and cool-downs a few times."""
        rounds = 0
        while True:
            try:
                completion = await self._manager.complete(
                    request, deadline=deadline, chain=list(target.chain)
                )
            except BadRequest as exc:
                # The live bot stops calling a provider after a 400 (its config must be wrong).
                # In a batch, once a provider has answered, a 400 is about that one row (too
                # long for the context, say): the next rows may still ask it.
                health = self._manager.health.get(exc.provider)
                if health is not None and exc.provider in self._answered_by:
                    health.forgive()
                raise
            except ProviderError as exc:
                rounds += 1
                wait = self._recovery_wait(target, exc)
                if wait is None or rounds > CIRCUIT_ROUNDS or time.monotonic() + wait >= deadline:
                    raise
                log.info("batch_waiting_for_provider", target=target.label, seconds=wait)
                await asyncio.sleep(wait)
            else:
                self._answered_by.add(completion.provider)
                return completion

    def _recovery_wait(self, target: Target, exc: ProviderError) -> float | None:
        """Seconds until a provider of ``target`` may be asked again, when all are paused
        (open circuit, Retry-After cool-down); None when the failure is final."""
        if not exc.retryable:
            return None
        health = [self._manager.health[name] for name in target.chain]
        if any(h.state in ("closed", "misconfigured") for h in health):
            return None
        return max(min(h.retry_in() for h in health), 0.25)
