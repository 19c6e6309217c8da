"""The background loop of a batch run: cancel polling, rate, progress lines, checkpoints.

``batch cancel`` runs in another process and can only write the run's status to the store;
this loop is how the running process notices (every half second). It also records the recent
rate for ``batch status``, prints the periodic progress line when stderr is not a terminal,
and starts the periodic rewrite of the output file. Answers are not committed here: the
:class:`~kryten_llm.batch.sink.ResultSink` commits them as they arrive.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from kryten_llm.batch.progress import Progress
from kryten_llm.batch.sink import OutputWriter, ResultSink
from kryten_llm.batch.store import RunStore
from kryten_llm.batch.storetypes import RunStatus

log = structlog.get_logger(__name__)

TICK = 0.2  # seconds between rounds (rate recorded, progress line when due)
CANCEL_POLL = 0.5  # seconds between looks at the run's status in the store


async def housekeeping(
    *,
    store: RunStore,
    run_id: str,
    sink: ResultSink,
    progress: Progress,
    output: OutputWriter,
    checkpoint_seconds: float,
    on_cancel: Callable[[], None],
) -> None:
    """Run until cancelled.

    Args:
        store: the run store (polled for ``cancelling``).
        run_id: the run.
        sink: committed with the current rate each round.
        progress: ticked each round (plain lines when due).
        output: rewritten every ``checkpoint_seconds``.
        checkpoint_seconds: seconds between output rewrites.
        on_cancel: called once ``batch cancel`` has asked the run to stop.
    """
    last_poll = last_checkpoint = time.monotonic()
    while True:
        await asyncio.sleep(TICK)
        now = time.monotonic()
        if now - last_poll >= CANCEL_POLL:  # answers commit as they arrive; the rate can wait
            last_poll = now
            sink.commit(rate=progress.rate())
            if store.status_of(run_id) is RunStatus.CANCELLING:
                log.info("batch_cancel_requested", batch_id=run_id)
                on_cancel()
        progress.tick()
        if now - last_checkpoint >= checkpoint_seconds and output.checkpoint():
            last_checkpoint = now
