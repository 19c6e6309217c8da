"""Run a planned batch: the life of one run, from its row in the store to its final status.

The engine of batch mode, wired here and implemented beside it::

    producer (batch.producer): rows -> prompt + hash -> skip (already in this run) / reuse
              (answered by an earlier run) / pack -> bounded queue
    workers (--concurrency): an asking strategy (batch.asking: plain, packed, chat line)
              -> pace (rate limits) -> ProviderManager (retries, backoff, Retry-After,
              circuit) -> JSON check -> result sink (batch.sink: committed as it arrives)
    housekeeping (batch.housekeeping): poll for `batch cancel`, rate, progress lines,
              periodic output checkpoint (in a thread, from the store)

A stop (``--stop-on-error``, ``batch cancel``, SIGINT/SIGTERM, task cancellation) lets
requests in flight finish for a short grace period, commits what was answered, writes the
output and leaves the run resumable. This module decides the run's final
:class:`~kryten_llm.batch.storetypes.RunStatus` and hands it to the store.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from kryten_llm.batch.asking import Asker
from kryten_llm.batch.chatlines import ChatLinePipeline
from kryten_llm.batch.housekeeping import housekeeping
from kryten_llm.batch.itemfiles import ItemFiles, recorder
from kryten_llm.batch.itemlog import ItemLog
from kryten_llm.batch.outputs import output_record, result_columns
from kryten_llm.batch.plan import BatchPlan
from kryten_llm.batch.printing import printer
from kryten_llm.batch.producer import Producer
from kryten_llm.batch.progress import Progress
from kryten_llm.batch.ratelimit import PacedProvider, RequestPacer
from kryten_llm.batch.sink import Observer, OutputWriter, ResultSink
from kryten_llm.batch.store import RunStore, new_run_id
from kryten_llm.batch.storedb import iter_items
from kryten_llm.batch.storetypes import ModelSummary, RunStatus
from kryten_llm.batch.work import Unit
from kryten_llm.llm import build_manager
from kryten_llm.llm.base import Provider

log = structlog.get_logger(__name__)


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
    status: RunStatus
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
        return self.status is RunStatus.COMPLETED and self.failed == 0

    def records(self) -> Iterator[dict[str, Any]]:
        """Every stored item as an output record (input columns plus results), in row order."""
        columns = result_columns(self.columns, pipeline=self.pipeline)
        for item in iter_items(self.db, self.batch_id):
            yield output_record(item, columns)


@dataclass(slots=True)
class _Stop:
    """Why and whether the run is stopping, and what went wrong."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    reason: RunStatus | None = None  # failed | cancelled | paused
    error: BaseException | None = None
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
        self._stop = _Stop()
        self._log: ItemLog | None = None
        self._producer: Producer | None = None
        self._sink: ResultSink | None = None
        self._output: OutputWriter | None = None

    def request_stop(self, reason: str = RunStatus.PAUSED) -> None:
        """Stop taking new rows (SIGINT/SIGTERM use ``paused``); the run stays resumable.

        Args:
            reason: ``paused``, ``cancelled`` or ``failed``: the status the run ends in if the
                stop comes before every row is answered.
        """
        if self._stop.reason is None:
            self._stop.reason = RunStatus(reason)
        self._stop.event.set()

    # ---- lifecycle

    async def run(self) -> BatchResult:
        """Execute the plan to the end (or a stop) and write the output.

        Raises:
            InputError | ConfigError: a malformed row further down the input (the run is
                marked failed, what was answered is kept); an item log that cannot be written.
        """
        started = time.monotonic()
        self._open()
        connector = aiohttp.TCPConnector(limit=max(self.options.concurrency * 2, 100))
        try:
            async with aiohttp.ClientSession(connector=connector) as session:
                await self._execute(self._asker(session))
        except asyncio.CancelledError:
            self.request_stop(RunStatus.PAUSED)
            await self._finish()
            raise
        except BaseException as exc:
            self._stop.error = exc
            await self._finish()
            raise
        await self._finish()
        return self._result(time.monotonic() - started)

    def _open(self) -> None:
        """Open the item log, then create (or reopen, for ``--resume``) the run."""
        plan, opts = self.plan, self.options
        labels = [t.label for t in plan.targets]
        output = str(plan.output) if plan.output else None
        run_id = plan.resume.id if plan.resume is not None else opts.batch_id or new_run_id()
        # Open the item log first: one that cannot be written stops the batch before it is
        # stored or anything is asked (ConfigError).
        directory = plan.settings.logging.response_log_dir
        self._log = ItemLog(directory, run_id, enabled=not opts.no_log)
        self._log.open()
        if plan.resume is not None:
            self.store.start_again(run_id, output_file=output)
            self.run_id = run_id
        else:
            self.run_id = self.store.create_run(
                run_id=run_id,
                input_file=str(plan.input_path) if plan.input_path else None,
                output_file=output,
                models=labels,
                config=opts.stored() | {"columns": list(plan.columns)},
            )
        log.info("batch_started", batch_id=self.run_id, models=labels, resumed=bool(plan.resume))
        on_failure = self._failed_item if opts.stop_on_error else None
        observers: list[Observer] = [printer()] if opts.prints_answers else []
        files = None
        if opts.output_dir:
            files = ItemFiles(Path(opts.output_dir), plan.template_hash)
            names = {t.label: t.model for t in plan.targets}
            observers.append(
                recorder(files, names, self.run_id, parse_json=plan.expectation is not None)
            )
        self._sink = ResultSink(
            self.store, self.run_id, self.progress, self._log, on_failure, observers
        )
        self._output = OutputWriter(plan, self.store, self.run_id)
        self._producer = Producer(
            plan, self.store, self.run_id, self._sink, self.progress, self._stop.event, files
        )

    def _asker(self, session: aiohttp.ClientSession) -> Asker:
        """The providers of the plan, each paced by the shared and its own rate limit."""
        opts = self.options
        shared = [RequestPacer(opts.rate_limit, opts.rate_window)] if opts.rate_limit else []
        pacers: dict[str, list[RequestPacer]] = {}

        per_model = self.plan.settings.batch.rate_limits

        def paced(name: str, provider: Provider) -> Provider:
            config = self.plan.llm.providers[name]
            own = config.rate_limit_per_minute or per_model.get(config.model)
            pacers[name] = [*shared, RequestPacer(own, opts.rate_window)] if own else list(shared)
            return PacedProvider(provider, pacers[name])

        manager = build_manager(self.plan.llm, session, wrap=paced)
        pipeline = ChatLinePipeline(self.plan.settings, manager) if opts.pipeline else None
        return Asker(self.plan, manager, pacers, pipeline)

    def _failed_item(self) -> None:
        log.warning("batch_stopping_on_error", batch_id=self.run_id)
        self.request_stop(RunStatus.FAILED)

    async def _execute(self, asker: Asker) -> None:
        assert self._producer is not None
        assert self._sink is not None
        assert self._output is not None
        workers = self.options.concurrency
        queue: asyncio.Queue[Unit | None] = asyncio.Queue(workers * 2)
        keeper = asyncio.create_task(
            housekeeping(
                store=self.store,
                run_id=self.run_id,
                sink=self._sink,
                progress=self.progress,
                output=self._output,
                checkpoint_seconds=self.options.checkpoint_seconds,
                on_cancel=lambda: self.request_stop(RunStatus.CANCELLED),
            )
        )
        counter = asyncio.create_task(self._producer.count_total())
        producer = asyncio.create_task(self._producer.produce(queue, workers))
        tasks = [asyncio.create_task(self._work(queue, asker)) for _ in range(workers)]
        try:
            await self._supervise([producer, *tasks])
        finally:
            for task in (counter, keeper):
                task.cancel()
            await asyncio.gather(counter, keeper, return_exceptions=True)
        if self._stop.error is not None:
            raise self._stop.error

    async def _work(self, queue: asyncio.Queue[Unit | None], asker: Asker) -> None:
        assert self._sink is not None
        while True:
            unit = await queue.get()
            if unit is None:
                return
            if self._stop.event.is_set():
                self._stop.dropped = True
                continue  # drain without asking, so the producer is never stuck on put
            results = await asker.ask(unit)
            self._sink.add(results, {item.row_key: item for item in unit.items})

    async def _supervise(self, tasks: list[asyncio.Task[None]]) -> None:
        """Wait for the tasks; after a stop, give requests in flight a grace period."""
        stop = self._stop
        pending = set(tasks)
        grace_until: float | None = None
        while pending:
            waiter = asyncio.create_task(stop.event.wait())
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
                    stop.error = stop.error or task.exception()
                    self.request_stop(RunStatus.FAILED)
            if stop.event.is_set() and grace_until is None:
                grace_until = time.monotonic() + self.options.stop_grace_seconds
            if grace_until is not None and pending and time.monotonic() >= grace_until:
                stop.dropped = True
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                return

    async def _finish(self) -> None:
        """Commit, write the output, set the final status. Safe to reach from any state."""
        if not self.run_id:
            return
        if self._sink is not None:
            self._sink.commit(rate=self.progress.rate())
        if self._output is not None:
            await self._output.final()
        status = self._final_status()
        self.store.finish(self.run_id, status)
        if self._log is not None:
            self._log.close()
        self.progress.close()
        log.info("batch_finished", batch_id=self.run_id, status=status.value)

    def _final_status(self) -> RunStatus:
        """How the run ended. A stop that came after the last row was answered changed
        nothing: the run is completed (or failed), whatever was asked."""
        stop = self._stop
        filled = self._producer is not None and self._producer.filled
        early = not filled or stop.dropped
        if stop.error is not None or stop.reason is RunStatus.FAILED:
            return RunStatus.FAILED
        cancelling = self.store.status_of(self.run_id) is RunStatus.CANCELLING
        if early and (stop.reason is RunStatus.CANCELLED or cancelling):
            return RunStatus.CANCELLED
        if early and stop.reason is RunStatus.PAUSED:
            return RunStatus.PAUSED
        return RunStatus.COMPLETED

    def _result(self, elapsed: float) -> BatchResult:
        info = self.store.run(self.run_id)
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
