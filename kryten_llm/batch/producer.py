"""The producer of a batch run: input rows in, units of work out, on a bounded queue.

Per chunk of rows it decides, for every model, whether a row must be asked: rows this run
already stored (``--resume``) are skipped, answers an earlier run got to the same prompt from
the same model are reused (unless ``--force``), and the rest are packed into
:class:`~kryten_llm.batch.work.Unit` s (one row, or ``--rows-per-request`` rows) and queued.
With ``--output-dir`` the per-item files decide instead: an item whose file holds an answer
from the model to this prompt is skipped, and the store's earlier answers are not reused (so
deleting a file asks that item again). A row that cannot be asked (it lacks a template column,
or its id cannot name a file) is recorded as failed for every model and the run goes on.
The queue is bounded, so memory does not grow with the input; a second streaming pass counts
the rows in a thread for the ETA (:func:`count_total`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import structlog

from kryten_llm.batch.itemfiles import ItemFiles, file_name
from kryten_llm.batch.plan import BatchPlan
from kryten_llm.batch.progress import Progress
from kryten_llm.batch.sink import ResultSink
from kryten_llm.batch.store import MAX_LOOKUP, RunStore
from kryten_llm.batch.storetypes import CachedAnswer, ItemResult, ItemStatus
from kryten_llm.batch.targets import Target
from kryten_llm.batch.templates import cell_text
from kryten_llm.batch.work import Unit, WorkItem
from kryten_llm.errors import ConfigError

log = structlog.get_logger(__name__)

CHUNK_ROWS = MAX_LOOKUP  # input rows looked up in the store at once


class Producer:
    """Fills the work queue of one run.

    Args:
        plan: the checked batch.
        store: the run store.
        run_id: the run.
        sink: takes reused answers (stored like fresh ones, marked ``cached``).
        progress: counts skipped rows.
        stop: set when the run must stop taking rows.
        item_files: the per-item files (``--output-dir``), which say what is answered.
    """

    def __init__(
        self,
        plan: BatchPlan,
        store: RunStore,
        run_id: str,
        sink: ResultSink,
        progress: Progress,
        stop: asyncio.Event,
        item_files: ItemFiles | None = None,
    ) -> None:
        self.plan = plan
        self._files = item_files
        self.options = plan.options
        self.store = store
        self.run_id = run_id
        self._sink = sink
        self._progress = progress
        self._stop = stop
        self.filled = False  # every row was read and queued (or stored)

    async def produce(self, queue: asyncio.Queue[Unit | None], workers: int) -> None:
        """Fill the queue, then end each of the ``workers`` with a ``None``.

        The end markers are awaited only after a normal fill: once cancelled (the stop grace
        is over) the producer must not wait for room in a queue that no worker drains any more.
        After a failed fill they are offered without waiting; a worker that gets none drains
        the queue (the run is stopping) and is cancelled at the end of the grace.

        Raises:
            InputError | ConfigError: a malformed row (the rows before it were queued).
        """
        try:
            await self._fill(queue)
        except Exception:
            for _ in range(workers):
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(None)
            raise
        for _ in range(workers):
            await queue.put(None)

    async def count_total(self) -> None:
        """Count the input's rows in a thread and record the run's total (for the ETA)."""
        rows = await asyncio.to_thread(self.plan.count_rows)
        if rows is None:
            return
        total = rows * len(self.plan.targets)
        self.store.set_total(self.run_id, total)
        self._progress.set_total(total)

    async def _fill(self, queue: asyncio.Queue[Unit | None]) -> None:
        """Read the rows in chunks and queue what must be asked.

        Per chunk, one query finds the items this run already stored (``--resume``) and one
        per model finds answers an earlier run gave to the same prompts, rather than one
        query per row on the event loop. A stored item whose prompt hash differs from the
        row's (the input changed since) is forgotten and asked again.
        """
        plan = self.plan
        opts = self.options
        check_stored = self.store.has_items(self.run_id)
        use_cache = [
            t.label
            for t in plan.targets
            if not opts.force
            and self._files is None
            and self.store.answered_elsewhere(self.run_id, t.label)
        ]
        packs: dict[str, list[WorkItem]] = {t.label: [] for t in plan.targets}
        rows = 0
        source = enumerate(plan.rows())
        while True:
            chunk: list[WorkItem] = []
            error: Exception | None = None
            read = 0
            try:
                for row_key, row in source:
                    rows = row_key + 1
                    read += 1
                    try:
                        chunk.append(self._item(row_key, row))
                    except (ConfigError, ValueError) as exc:  # this row only: record, go on
                        self._fail_row(row_key, row, exc)
                    if read >= CHUNK_ROWS:
                        break
            except Exception as exc:  # a malformed row: queue the rows before it first
                error = exc
            stored = self._stored(chunk) if check_stored and chunk else {}
            cached = {
                label: self.store.cached_answers(label, (i.prompt_hash for i in chunk))
                for label in use_cache
            }
            for item in chunk:
                if self._stop.is_set():
                    return
                in_file = self._files.answered(item.item_id) if self._files else set()
                for target in plan.targets:
                    if target.model in in_file:
                        self._progress.advance(skipped=1)
                        continue
                    if stored.get((item.row_key, target.label)) == item.prompt_hash:
                        self._progress.advance(skipped=1)
                        continue
                    answer = cached.get(target.label, {}).get(item.prompt_hash)
                    if answer is not None:
                        self._reuse(target, item, answer)
                        continue
                    pack = packs[target.label]
                    pack.append(item)
                    if len(pack) >= opts.rows_per_request:
                        packs[target.label] = []
                        await queue.put(Unit(target, tuple(pack)))
            if error is not None:
                raise error
            if read < CHUNK_ROWS:
                break
            await asyncio.sleep(0)  # let workers and housekeeping run on cached stretches
        for target in plan.targets:
            if packs[target.label]:
                if self._stop.is_set():
                    return
                await queue.put(Unit(target, tuple(packs[target.label])))
        self.filled = True
        if check_stored and self.store.forget_rows_from(self.run_id, rows):
            log.info("batch_rows_removed", batch_id=self.run_id, rows_now=rows)
        if self._progress.total is None:  # the counting pass has not finished: we know now
            self._progress.set_total(rows * len(plan.targets))
            self.store.set_total(self.run_id, rows * len(plan.targets))

    def _item(self, row_key: int, row: dict[str, Any]) -> WorkItem:
        """The row ready to ask.

        Raises:
            ConfigError: the row lacks a template column.
            ValueError: its id (``--id-column``) cannot name a file.
        """
        prompt = self.plan.prompt_of(row)
        item_id = ""
        if self.options.id_column:
            item_id = cell_text(row.get(self.options.id_column))
            file_name(item_id)
        return WorkItem(
            row_key=row_key,
            row_json=json.dumps(row, ensure_ascii=False, default=str),
            prompt=prompt,
            prompt_hash=self.plan.prompt_hash(row, prompt),
            username=str(row.get("username") or "") if self.options.pipeline else "",
            item_id=item_id,
        )

    def _fail_row(self, row_key: int, row: dict[str, Any], exc: Exception) -> None:
        """Record a row that cannot be asked as failed, for every model."""
        if isinstance(exc, ConfigError):
            reason = "; ".join(f"{msg} ({fix})" for _, msg, fix in exc.problems)
        else:
            reason = str(exc)
        log.info("batch_row_invalid", batch_id=self.run_id, row=row_key, error=reason)
        now = time.time()
        row_json = json.dumps(row, ensure_ascii=False, default=str)
        results = [
            ItemResult(
                row_key=row_key,
                model=target.label,
                prompt_hash="",
                status=ItemStatus.FAILED,
                row_json=row_json,
                error=f"row {row_key} cannot be asked: {reason}",
                started_at=now,
                finished_at=now,
            )
            for target in self.plan.targets
        ]
        self._sink.add(results, {})

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

    def _reuse(self, target: Target, item: WorkItem, cached: CachedAnswer) -> None:
        """Store an earlier run's answer to the same prompt from the same model."""
        now = time.time()
        result = ItemResult(
            row_key=item.row_key,
            model=target.label,
            prompt_hash=item.prompt_hash,
            status=ItemStatus.DONE,
            row_json=item.row_json,
            response=cached.response,
            provider=cached.provider,
            prompt_tokens=cached.prompt_tokens,
            completion_tokens=cached.completion_tokens,
            cost_usd=0.0,
            extra=cached.extra,
            cached=True,
            started_at=now,
            finished_at=now,
        )
        self._sink.add([result], {item.row_key: item})
