"""Where answers go: the run store (committed as they arrive), the item log, the output file.

Crash loss is what this module bounds. Each result is handed to :meth:`ResultSink.add` as a
worker gets it; the sink schedules one commit for the end of the current turn of the event
loop (``loop.call_soon``), so the answers that arrive together share one transaction and no
answer waits longer than one loop turn for its commit. A SIGKILL therefore loses only the
answers of the turn it interrupts, and ``--resume`` asks again the requests that were in
flight: at most ``--concurrency`` units, never a fraction of a second of answers.

The output file is written from the store, never from this buffer (see
:mod:`kryten_llm.batch.outputs`): :class:`OutputWriter` does it in a thread, at checkpoints
and at the end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence

import structlog

from kryten_llm.batch.itemlog import ItemLog
from kryten_llm.batch.outputs import (
    input_keys,
    output_record,
    result_columns,
    write_records,
    written_once,
)
from kryten_llm.batch.plan import BatchPlan
from kryten_llm.batch.progress import Progress
from kryten_llm.batch.store import RunStore
from kryten_llm.batch.storedb import iter_items
from kryten_llm.batch.storetypes import ItemResult, ItemStatus
from kryten_llm.batch.work import WorkItem

log = structlog.get_logger(__name__)

# Told about each result as it is taken (printing answers, per-item files).
Observer = Callable[[ItemResult, WorkItem | None], None]


class ResultSink:
    """Takes results from the workers: counts, logs and commits them.

    Args:
        store: the run store.
        run_id: the run the results belong to.
        progress: counts finished items.
        item_log: one JSONL line per result (``--no-log``: disabled).
        on_failure: called after a failed result (``--stop-on-error`` stops the run).
        observers: told about each result with its row (printing, per-item files).
    """

    def __init__(
        self,
        store: RunStore,
        run_id: str,
        progress: Progress,
        item_log: ItemLog | None = None,
        on_failure: Callable[[], None] | None = None,
        observers: Sequence[Observer] = (),
    ) -> None:
        self._store = store
        self._observers = tuple(observers)
        self._run_id = run_id
        self._progress = progress
        self._log = item_log
        self._on_failure = on_failure
        self._buffer: list[ItemResult] = []
        self._scheduled: asyncio.Handle | None = None

    def add(self, results: list[ItemResult], items: Mapping[int, WorkItem]) -> None:
        """Take results; they are committed at the end of this loop turn.

        Args:
            results: what a worker (or the reuse of earlier answers) produced.
            items: the rows they answer, by row key (for the item log's prompt).
        """
        done = failed = 0
        for result in results:
            self._buffer.append(result)
            if result.status is ItemStatus.DONE:
                done += 1
            else:
                failed += 1
            item = items.get(result.row_key)
            for observer in self._observers:
                observer(result, item)
            if self._log is not None:
                self._log.write(
                    {
                        "batch_id": self._run_id,
                        "row": result.row_key,
                        "model": result.model,
                        "status": result.status.value,
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
        self._progress.advance(done=done, failed=failed)
        if self._scheduled is None and self._buffer:
            self._scheduled = asyncio.get_running_loop().call_soon(self._commit_scheduled)
        if failed and self._on_failure is not None:
            self._on_failure()

    def commit(self, *, rate: float | None = None) -> None:
        """Commit what is buffered now (and the run's recent ``rate``, when given)."""
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        buffer, self._buffer = self._buffer, []
        try:
            self._store.record(self._run_id, buffer, rate=rate)
        except BaseException:
            self._buffer[:0] = buffer  # kept for the next commit
            raise

    def _commit_scheduled(self) -> None:
        self._scheduled = None
        try:
            self.commit()
        except Exception:  # the next commit (tick or end) tries again with the same items
            log.exception("batch_commit_failed", batch_id=self._run_id)


class OutputWriter:
    """Writes the output file of a run from the store, in a thread (own connection).

    Args:
        plan: the checked batch (output path and format, input columns, pipeline mode).
        store: the run store (only its path is used: the thread opens its own connection).
        run_id: the run to write.
    """

    def __init__(self, plan: BatchPlan, store: RunStore, run_id: str) -> None:
        self._plan = plan
        self._db = store.path
        self._run_id = run_id
        self._task: asyncio.Task[int] | None = None

    @property
    def wanted(self) -> bool:
        """Whether the run has an output file at all."""
        return self._plan.output is not None

    def checkpoint(self) -> bool:
        """Start rewriting the output in the background; False if there is no output file or
        a rewrite is still under way (try again later)."""
        if not self.wanted or self._task is not None:
            return False
        assert self._plan.output is not None
        if written_once(self._plan.output):
            return False
        self._task = asyncio.create_task(self._checkpoint())
        return True

    async def final(self) -> None:
        """Wait for a checkpoint under way, then write the file once more (errors logged)."""
        if self._task is not None:
            try:
                await asyncio.shield(self._task)
            except Exception:
                log.debug("batch_checkpoint_failed", exc_info=True)
        if not self.wanted:
            return
        try:
            await asyncio.shield(asyncio.to_thread(self.write))
        except Exception:
            log.exception("batch_output_failed", path=str(self._plan.output))

    async def _checkpoint(self) -> int:
        try:
            return await asyncio.to_thread(self.write)
        finally:
            self._task = None

    def write(self) -> int:
        """Write the output file from the store; returns the records written."""
        plan = self._plan
        assert plan.output is not None
        assert plan.output_format is not None
        columns = result_columns(plan.columns, pipeline=plan.options.pipeline)
        keys = list(plan.columns)
        if plan.output_format == "csv":  # a first pass: keys of later rows, _extra
            rows = (item.row_json for item in iter_items(self._db, self._run_id))
            keys = input_keys(plan.columns, rows)
        names = [name for _, name in columns]
        # A key first seen in a later row may be a result column's name: the result wins there.
        header = [*(key for key in keys if key not in names), *names]
        records = (output_record(item, columns) for item in iter_items(self._db, self._run_id))
        return write_records(plan.output, plan.output_format, records, header=header)
