"""Run a planned batch: rows in, answers out, every answer stored as it arrives.

The engine of batch mode::

    producer: rows -> prompt + hash -> skip (already in this run) / reuse (answered by an
              earlier run) / pack -> bounded queue
    workers (--concurrency): pace (rate limits) -> ProviderManager (retries, backoff,
              Retry-After, circuit) -> JSON check -> result buffer
    housekeeping (every 0.2 s): commit the buffer to SQLite, poll for `batch cancel`,
              progress, periodic output checkpoint (in a thread, from the store)

The queue is bounded, so memory does not grow with the input. The producer reads the input
once; the item count is taken by a second streaming pass in a thread, for the ETA. A stop
(``--stop-on-error``, ``batch cancel``, SIGINT/SIGTERM, task cancellation) lets requests in
flight finish for a short grace period, commits what was answered, writes the output and
leaves the run resumable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from kryten_llm.batch.chatlines import ChatLinePipeline, outcome
from kryten_llm.batch.itemlog import ItemLog
from kryten_llm.batch.outputs import input_keys, output_record, result_columns, write_records
from kryten_llm.batch.packing import packed_request, unpack
from kryten_llm.batch.plan import BatchPlan
from kryten_llm.batch.progress import Progress
from kryten_llm.batch.ratelimit import PacedProvider, RequestPacer, count_requests, prepay
from kryten_llm.batch.store import (
    MAX_LOOKUP,
    ItemResult,
    ModelSummary,
    RunStore,
    iter_items,
    new_run_id,
)
from kryten_llm.batch.targets import Target
from kryten_llm.errors import BadRequest, ProviderError
from kryten_llm.llm.base import ChatMessage, Completion, CompletionRequest, Provider
from kryten_llm.llm.base import create_provider as make_provider
from kryten_llm.llm.manager import ProviderManager

log = structlog.get_logger(__name__)

_TICK = 0.2  # seconds between commits of answered items
_CANCEL_POLL = 0.5  # seconds between looks at the run's status in the store
_FLUSH_AT = 2000  # answered items that force a commit before the next tick
_CHUNK_ROWS = MAX_LOOKUP  # input rows looked up in the store at once
_CIRCUIT_ROUNDS = 5  # times an item waits for an open circuit / cool-down before failing


@dataclass(slots=True)
class WorkItem:
    """One row on its way to one model."""

    row_key: int
    row_json: str
    prompt: str
    prompt_hash: str
    username: str = ""


@dataclass(slots=True)
class Unit:
    """What one worker sends as one request: one row, or several packed."""

    target: Target
    items: list[WorkItem]


@dataclass(frozen=True, slots=True)
class BatchResult:
    """How a run ended.

    Attributes:
        batch_id: the run's id (``batch status``, ``--resume --batch-id``).
        status: completed, failed, paused or cancelled.
        total: items of the run (rows times models), when known.
        completed: items answered.
        failed: items that failed.
        output: the output file written, if any.
        db: the run store.
        summary: figures per model.
        elapsed_seconds: the wall time of this invocation.
    """

    batch_id: str
    status: str
    total: int | None
    completed: int
    failed: int
    output: Path | None
    db: Path
    summary: tuple[ModelSummary, ...]
    elapsed_seconds: float
    columns: tuple[str, ...] = ()
    pipeline: bool = False

    @property
    def ok(self) -> bool:
        """Completed with no failed item."""
        return self.status == "completed" and self.failed == 0

    def records(self) -> Iterator[dict[str, Any]]:
        """Every stored item as an output record (input columns plus results), in row order."""
        columns = result_columns(self.columns, pipeline=self.pipeline)
        for item in iter_items(self.db, self.batch_id):
            yield output_record(item, columns)


@dataclass(slots=True)
class _State:
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str | None = None  # failed | cancelled | paused
    buffer: list[ItemResult] = field(default_factory=list)
    writer: asyncio.Task[int] | None = None
    error: BaseException | None = None
    filled: bool = False  # every row was read and queued (or stored)
    dropped: bool = False  # a queued unit was dropped or a request abandoned by a stop


class BatchRunner:
    """Runs one :class:`BatchPlan` against a :class:`RunStore`.

    Args:
        plan: the checked batch.
        store: the run store (this process's connection).
        progress: where progress is shown.
    """

    def __init__(self, plan: BatchPlan, store: RunStore, progress: Progress) -> None:
        self.plan = plan
        self.options = plan.options
        self.store = store
        self.progress = progress
        self.run_id = ""
        self._state = _State()
        self._manager: ProviderManager | None = None
        self._pacers: dict[str, list[RequestPacer]] = {}
        self._pipeline: ChatLinePipeline | None = None
        self._log: ItemLog | None = None
        self._answered_by: set[str] = set()
        system = plan.system()
        self._base = (ChatMessage("system", system),) if system else ()

    def request_stop(self, reason: str = "paused") -> None:
        """Stop taking new rows (SIGINT/SIGTERM use ``paused``); the run stays resumable."""
        if self._state.reason is None:
            self._state.reason = reason
        self._state.stop.set()

    # ---- lifecycle

    async def run(self) -> BatchResult:
        """Execute the plan to the end (or a stop) and write the output.

        Raises:
            ConfigError: a malformed row further down the input (the run is marked failed,
                what was answered is kept).
        """
        started = time.monotonic()
        opts = self.options
        plan = self.plan
        labels = [t.label for t in plan.targets]
        config = opts.stored() | {"columns": list(plan.columns)}
        input_file = str(plan.input_path) if plan.input_path else None
        output = str(plan.output) if plan.output else None
        run_id = plan.resume.id if plan.resume is not None else opts.batch_id or new_run_id()
        # Open the item log first: one that cannot be written stops the batch before it is
        # stored or anything is asked (ConfigError).
        directory = plan.settings.logging.response_log_dir
        self._log = ItemLog(directory, run_id, enabled=not opts.no_log)
        self._log.open()
        if plan.resume is not None:
            self.run_id = run_id
            self.store.start_again(self.run_id, output_file=output)
        else:
            self.run_id = self.store.create_run(
                run_id=run_id,
                input_file=input_file,
                output_file=output,
                models=labels,
                config=config,
            )
        log.info("batch_started", batch_id=self.run_id, models=labels, resumed=bool(plan.resume))
        connector = aiohttp.TCPConnector(limit=max(opts.concurrency * 2, 100))
        try:
            async with aiohttp.ClientSession(connector=connector) as session:
                self._build_providers(session)
                await self._execute()
        except asyncio.CancelledError:
            self.request_stop("paused")
            await self._finish()
            raise
        except BaseException as exc:
            self._state.error = exc
            await self._finish()
            raise
        await self._finish()
        return self._result(time.monotonic() - started)

    def _build_providers(self, session: aiohttp.ClientSession) -> None:
        opts = self.options
        shared = [RequestPacer(opts.rate_limit, opts.rate_window)] if opts.rate_limit else []
        providers: dict[str, Provider] = {}
        for key, cfg in self.plan.llm.providers.items():
            own = cfg.rate_limit_per_minute
            pacers = [*shared, RequestPacer(own, opts.rate_window)] if own else list(shared)
            self._pacers[key] = pacers
            providers[key] = PacedProvider(make_provider(key, cfg, session), pacers)
        self._manager = ProviderManager(providers, self.plan.llm)
        if opts.pipeline:
            self._pipeline = ChatLinePipeline(self.plan.settings, self._manager)

    async def _execute(self) -> None:
        state = self._state
        queue: asyncio.Queue[Unit | None] = asyncio.Queue(self.options.concurrency * 2)
        counter = asyncio.create_task(self._count())
        keeper = asyncio.create_task(self._housekeeping())
        producer = asyncio.create_task(self._produce(queue))
        workers = [asyncio.create_task(self._work(queue)) for _ in range(self.options.concurrency)]
        try:
            await self._supervise([producer, *workers])
        finally:
            for task in (counter, keeper):
                task.cancel()
            await asyncio.gather(counter, keeper, return_exceptions=True)
        if state.error is not None:
            raise state.error

    async def _supervise(self, tasks: list[asyncio.Task[None]]) -> None:
        """Wait for the tasks; after a stop, give requests in flight a grace period."""
        state = self._state
        pending = set(tasks)
        grace_until: float | None = None
        while pending:
            waiter = asyncio.create_task(state.stop.wait())
            timeout = None if grace_until is None else max(grace_until - time.monotonic(), 0)
            done, _ = await asyncio.wait(
                pending | ({waiter} if grace_until is None else set()),
                timeout=timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            waiter.cancel()
            for task in done & pending:
                pending.discard(task)
                if not task.cancelled() and task.exception() is not None:
                    state.error = state.error or task.exception()
                    self.request_stop("failed")
            if state.stop.is_set() and grace_until is None:
                grace_until = time.monotonic() + self.options.stop_grace_seconds
            if grace_until is not None and pending and time.monotonic() >= grace_until:
                state.dropped = True
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                return

    async def _finish(self) -> None:
        """Commit, write the output, set the final status. Safe to reach from any state."""
        state = self._state
        if not self.run_id:
            return
        self._flush()
        if state.writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(state.writer)
        if self.plan.output is not None:
            try:
                await asyncio.shield(asyncio.to_thread(self._write_output))
            except Exception:
                log.exception("batch_output_failed", path=str(self.plan.output))
        # A stop that came after the last row was answered changed nothing: the run is
        # completed (or failed), whatever was asked.
        early = not state.filled or state.dropped
        cancelling = self.store.status_of(self.run_id) == "cancelling"
        if state.error is not None or state.reason == "failed":
            status = "failed"
        elif early and (state.reason == "cancelled" or cancelling):
            status = "cancelled"
        elif early and state.reason == "paused":
            status = "paused"
        else:
            status = "completed"
        self.store.set_status(self.run_id, status)
        if self._log is not None:
            self._log.close()
        self.progress.close()
        log.info("batch_finished", batch_id=self.run_id, status=status)

    def _result(self, elapsed: float) -> BatchResult:
        info = self.store.get_run(self.run_id)
        assert info is not None
        return BatchResult(
            batch_id=self.run_id,
            status=info.status,
            total=info.total_prompts,
            completed=info.completed_prompts,
            failed=info.failed_prompts,
            output=self.plan.output,
            db=self.store.path,
            summary=tuple(self.store.summary(self.run_id)),
            elapsed_seconds=elapsed,
            columns=self.plan.columns,
            pipeline=self.options.pipeline,
        )

    # ---- background work

    async def _count(self) -> None:
        rows = await asyncio.to_thread(self.plan.count_rows)
        if rows is None:
            return
        total = rows * len(self.plan.targets)
        self.store.set_total(self.run_id, total)
        self.progress.set_total(total)

    async def _housekeeping(self) -> None:
        last_poll = last_checkpoint = time.monotonic()
        while True:
            await asyncio.sleep(_TICK)
            self._flush()
            now = time.monotonic()
            if now - last_poll >= _CANCEL_POLL:
                last_poll = now
                if self.store.status_of(self.run_id) == "cancelling":
                    log.info("batch_cancel_requested", batch_id=self.run_id)
                    self.request_stop("cancelled")
            self.progress.tick()
            due = now - last_checkpoint >= self.options.checkpoint_seconds
            if due and self.plan.output is not None and self._state.writer is None:
                last_checkpoint = now
                self._state.writer = asyncio.create_task(self._checkpoint())

    async def _checkpoint(self) -> int:
        try:
            return await asyncio.to_thread(self._write_output)
        finally:
            self._state.writer = None

    def _write_output(self) -> int:
        """Write the output file from the store (runs in a thread, own connection)."""
        assert self.plan.output is not None
        assert self.plan.output_format is not None
        columns = result_columns(self.plan.columns, pipeline=self.options.pipeline)
        keys = list(self.plan.columns)
        if self.plan.output_format == "csv":  # a first pass: keys of later rows, _extra
            rows = (item["row_json"] for item in iter_items(self.store.path, self.run_id))
            keys = input_keys(self.plan.columns, rows)
        names = [name for _, name in columns]
        # A key first seen in a later row may be a result column's name: the result wins there.
        header = [*(key for key in keys if key not in names), *names]
        records = (
            output_record(item, columns) for item in iter_items(self.store.path, self.run_id)
        )
        return write_records(self.plan.output, self.plan.output_format, records, header=header)

    def _flush(self) -> None:
        buffer = self._state.buffer
        self._state.buffer = []
        self.store.record(self.run_id, buffer, rate=self.progress.rate())

    def _sink(self, results: list[ItemResult], items: dict[int, WorkItem]) -> None:
        done = failed = 0
        for result in results:
            self._state.buffer.append(result)
            if result.status == "done":
                done += 1
            else:
                failed += 1
            if self._log is not None:
                item = items.get(result.row_key)
                self._log.write(
                    {
                        "batch_id": self.run_id,
                        "row": result.row_key,
                        "model": result.model,
                        "status": result.status,
                        "prompt": item.prompt if item else None,
                        "response": result.response,
                        "error": result.error,
                        "attempts": result.attempts,
                        "latency_ms": result.latency_ms,
                        "prompt_tokens": result.prompt_tokens,
                        "completion_tokens": result.completion_tokens,
                        "cost_usd": result.cost_usd,
                        "cached": result.cached,
                    }
                )
        self.progress.advance(done=done, failed=failed)
        if len(self._state.buffer) >= _FLUSH_AT:
            self._flush()
        if failed and self.options.stop_on_error:
            log.warning("batch_stopping_on_error", batch_id=self.run_id)
            self.request_stop("failed")

    # ---- producing

    async def _produce(self, queue: asyncio.Queue[Unit | None]) -> None:
        """Fill the queue, then end each worker with a ``None``.

        The end markers are awaited only after a normal fill: once cancelled (the stop grace
        is over) the producer must not wait for room in a queue that no worker drains any more.
        After a failed fill they are offered without waiting; a worker that gets none drains
        the queue (the run is stopping) and is cancelled at the end of the grace.
        """
        try:
            await self._fill(queue)
        except Exception:
            for _ in range(self.options.concurrency):
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(None)
            raise
        for _ in range(self.options.concurrency):
            await queue.put(None)

    async def _fill(self, queue: asyncio.Queue[Unit | None]) -> None:
        """Read the rows in chunks and queue what must be asked.

        Per chunk, one query finds the items this run already stored (``--resume``) and one
        per model finds answers an earlier run gave to the same prompts, rather than one
        query per row on the event loop. A stored item whose prompt hash differs from the
        row's (the input changed since) is forgotten and asked again.
        """
        plan = self.plan
        opts = self.options
        state = self._state
        check_stored = self.store.has_items(self.run_id)
        use_cache = [
            t.label
            for t in plan.targets
            if not opts.force and self.store.answered_elsewhere(self.run_id, t.label)
        ]
        packs: dict[str, list[WorkItem]] = {t.label: [] for t in plan.targets}
        rows = 0
        source = enumerate(plan.rows())
        while True:
            chunk: list[WorkItem] = []
            error: Exception | None = None
            try:
                for row_key, row in source:
                    chunk.append(self._item(row_key, row))
                    if len(chunk) >= _CHUNK_ROWS:
                        break
            except Exception as exc:  # a malformed row: queue the rows before it first
                error = exc
            rows += len(chunk)
            stored = self._stored(chunk) if check_stored and chunk else {}
            cached = {
                label: self.store.cached_answers(label, (i.prompt_hash for i in chunk))
                for label in use_cache
            }
            for item in chunk:
                if state.stop.is_set():
                    return
                for target in plan.targets:
                    if stored.get((item.row_key, target.label)) == item.prompt_hash:
                        self.progress.advance(skipped=1)
                        continue
                    answer = cached.get(target.label, {}).get(item.prompt_hash)
                    if answer is not None:
                        self._reuse(target, item, answer)
                        continue
                    pack = packs[target.label]
                    pack.append(item)
                    if len(pack) >= opts.rows_per_request:
                        packs[target.label] = []
                        await queue.put(Unit(target, pack))
            if error is not None:
                raise error
            if len(chunk) < _CHUNK_ROWS:
                break
            await asyncio.sleep(0)  # let workers and housekeeping run on cached stretches
        for target in plan.targets:
            if packs[target.label]:
                if state.stop.is_set():
                    return
                await queue.put(Unit(target, packs[target.label]))
        state.filled = True
        if check_stored and self.store.forget_rows_from(self.run_id, rows):
            log.info("batch_rows_removed", batch_id=self.run_id, rows_now=rows)
        if self.progress.total is None:  # the counting pass has not finished: we know now
            self.progress.set_total(rows * len(plan.targets))
            self.store.set_total(self.run_id, rows * len(plan.targets))

    def _item(self, row_key: int, row: dict[str, Any]) -> WorkItem:
        prompt = self.plan.prompt_of(row)
        return WorkItem(
            row_key=row_key,
            row_json=json.dumps(row, ensure_ascii=False, default=str),
            prompt=prompt,
            prompt_hash=self.plan.prompt_hash(row, prompt),
            username=str(row.get("username") or "") if self.options.pipeline else "",
        )

    def _stored(self, chunk: list[WorkItem]) -> dict[tuple[int, str], str]:
        """The stored items of the chunk's rows, by (row_key, model), minus those whose prompt
        changed (forgotten here, so that they are asked again and replaced, not duplicated)."""
        stored = self.store.stored_hashes(self.run_id, chunk[0].row_key, chunk[-1].row_key)
        hashes = {item.row_key: item.prompt_hash for item in chunk}
        stale = [key for key, digest in stored.items() if hashes.get(key[0]) != digest]
        if stale:
            log.info("batch_rows_changed", batch_id=self.run_id, items=len(stale))
            self.store.forget(self.run_id, stale)
            for key in stale:
                del stored[key]
        return stored

    def _reuse(self, target: Target, item: WorkItem, cached: tuple[Any, ...]) -> None:
        """Store an earlier run's answer to the same prompt from the same model."""
        response, provider, prompt_tokens, completion_tokens, extra = cached
        now = time.time()
        result = ItemResult(
            row_key=item.row_key,
            model=target.label,
            prompt_hash=item.prompt_hash,
            status="done",
            row_json=item.row_json,
            response=response,
            provider=provider,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=0.0,
            extra=extra,
            cached=True,
            started_at=now,
            finished_at=now,
        )
        self._sink([result], {item.row_key: item})

    # ---- working

    async def _work(self, queue: asyncio.Queue[Unit | None]) -> None:
        while True:
            unit = await queue.get()
            if unit is None:
                return
            if self._state.stop.is_set():
                self._state.dropped = True
                continue  # drain without asking, so the producer is never stuck on put
            if self._pipeline is not None:
                results = [await self._ask_chat(unit.target, unit.items[0])]
            elif len(unit.items) > 1:
                results = await self._ask_packed(unit.target, unit.items)
            else:
                results = [await self._ask(unit.target, unit.items[0])]
            self._sink(results, {item.row_key: item for item in unit.items})

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
        assert self._manager is not None
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
                if wait is None or rounds > _CIRCUIT_ROUNDS or time.monotonic() + wait >= deadline:
                    raise
                log.info("batch_waiting_for_provider", target=target.label, seconds=wait)
                await asyncio.sleep(wait)
            else:
                self._answered_by.add(completion.provider)
                return completion

    def _recovery_wait(self, target: Target, exc: ProviderError) -> float | None:
        """Seconds until a provider of ``target`` may be asked again, when all are paused
        (open circuit, Retry-After cool-down); None when the failure is final."""
        assert self._manager is not None
        if not exc.retryable:
            return None
        health = [self._manager.health[name] for name in target.chain]
        if any(h.state in ("closed", "misconfigured") for h in health):
            return None
        return max(min(h.retry_in() for h in health), 0.25)

    async def _ask(self, target: Target, item: WorkItem) -> ItemResult:
        """Ask one row; with ``--expect-json`` re-ask (with a nudge) until it is valid."""
        requests = count_requests()
        await prepay(self._pacers.get(target.chain[0], []))
        started = time.time()
        deadline = time.monotonic() + self.options.timeout_seconds
        expectation = self.plan.expectation
        messages = (*self._base, ChatMessage("user", item.prompt))
        tries = 1 + (self.options.json_retries if expectation is not None else 0)
        usage = _Usage()
        reason = ""
        for _ in range(tries):
            try:
                completion = await self._complete(target, self._request(messages), deadline)
            except ProviderError as exc:
                return usage.result(item, target, "failed", None, str(exc), requests[0], started)
            usage.add(completion, self._manager)
            if expectation is None:
                return usage.result(
                    item, target, "done", completion.text, None, requests[0], started
                )
            found = expectation.check(completion.text)
            if found is None:
                text = expectation.normalise(completion.text)
                return usage.result(item, target, "done", text, None, requests[0], started)
            reason = found
            messages = (
                *messages,
                ChatMessage("assistant", completion.text),
                ChatMessage("user", expectation.nudge(found)),
            )
        error = f"answer is {reason} (after {tries} tries)"
        return usage.result(item, target, "failed", None, error, requests[0], started)

    async def _ask_packed(self, target: Target, items: list[WorkItem]) -> list[ItemResult]:
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
                    _Usage().result(item, target, "failed", None, str(exc), requests[0], started)
                    for item in items
                ]
            completion = None
        answers = unpack(completion.text, keys).answers if completion is not None else {}
        good = {
            key: answer
            for key, answer in answers.items()
            if expectation is None or expectation.check(answer) is None
        }
        results: list[ItemResult] = []
        share = _Usage()
        if completion is not None:
            share.add(completion, self._manager, parts=max(len(good), 1))
        sent = requests[0]
        for key, item in zip(keys, items, strict=True):
            if key in good:
                text = good[key] if expectation is None else expectation.normalise(good[key])
                # The packed request is counted once, on the first row it answered.
                results.append(share.result(item, target, "done", text, None, sent, started))
                sent = 0
        redo = [item for key, item in zip(keys, items, strict=True) if key not in good]
        if redo:
            log.info("batch_pack_split", target=target.label, rows=len(redo), of=len(items))
        for item in redo:
            result = await self._ask(target, item)
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
        status, response, error = outcome(result)
        usage = result.usage
        spent = _Usage(
            prompt_tokens=usage.prompt_tokens if usage is not None else None,
            completion_tokens=usage.completion_tokens if usage is not None else None,
            cost_usd=result.cost_usd,
            latency_ms=result.latency_ms,
            provider=result.provider,
        )
        extra = {"reason": result.reason.value, "parts": list(result.parts or ())}
        return spent.result(
            item, target, status, response, error, requests[0], started, extra=extra
        )


@dataclass(slots=True)
class _Usage:
    """Tokens, cost and latency accumulated over the calls made for one item."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    latency_ms: float | None = None
    provider: str | None = None

    def add(self, completion: Completion, manager: ProviderManager | None, parts: int = 1) -> None:
        self.provider = completion.provider
        self.latency_ms = completion.latency_ms
        if completion.usage is not None:
            self.prompt_tokens = (self.prompt_tokens or 0) + completion.usage.prompt_tokens // parts
            self.completion_tokens = (
                self.completion_tokens or 0
            ) + completion.usage.completion_tokens // parts
        cost = manager.cost(completion) if manager is not None else None
        if cost is not None:
            self.cost_usd = (self.cost_usd or 0.0) + cost / parts

    def result(
        self,
        item: WorkItem,
        target: Target,
        status: str,
        response: str | None,
        error: str | None,
        attempts: int,
        started: float,
        *,
        extra: dict[str, Any] | None = None,
    ) -> ItemResult:
        return ItemResult(
            row_key=item.row_key,
            model=target.label,
            prompt_hash=item.prompt_hash,
            status=status,
            row_json=item.row_json,
            response=response,
            error=error,
            attempts=attempts,
            provider=self.provider,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cost_usd=self.cost_usd,
            latency_ms=self.latency_ms,
            extra=None if extra is None else json.dumps(extra, ensure_ascii=False),
            started_at=started,
            finished_at=time.time(),
        )
