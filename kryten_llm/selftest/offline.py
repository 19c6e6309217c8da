"""The self-test's scenarios that need no bot: ``batch`` and ``explore`` as real processes.

Both run the very command lines an operator runs (``python -m kryten_llm batch ...``,
``... explore ...``) in the scratch folder, and judge them by what they leave behind: the
batch's output file and run store, the explorer's ``output.txt``, ``output.json`` and
``metadata.json``. The batch is killed with SIGKILL once some rows are in its store (not
after a guessed sleep), then resumed; every row must then be answered exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

from kryten_llm.batch.store import RunStore
from kryten_llm.errors import ConfigError, SelftestError
from kryten_llm.selftest.scenario import Trace, expect
from kryten_llm.selftest.scratch import BATCH_ROWS
from kryten_llm.selftest.stack import start_child
from kryten_llm.selftest.watch import tail, wait_for

if TYPE_CHECKING:
    from pathlib import Path

    from kryten_llm.selftest.stack import Stack

# The explorer's provider. The ``random`` provider (seeded, controllable duplicates) replaces
# the scripted word list here once it exists: change this one line to "random".
EXPLORE_PROVIDER = "scripted"
EXPLORE_PRODUCERS = 2
EXPLORE_ITERATIONS = 3
KILL_AFTER_ROWS = 10  # rows in the store before the SIGKILL
RUN_SECONDS = 20.0  # bound of one batch or explore process


async def _finish(process: asyncio.subprocess.Process, log: Path, what: str) -> None:
    """Wait for a child to exit 0 (bounded); it is killed if the wait ends otherwise.

    Raises:
        SelftestError: it ran too long or exited with another code.
    """
    try:
        code = await asyncio.wait_for(process.wait(), RUN_SECONDS)
    except TimeoutError:
        raise SelftestError(f"{what} still running after {RUN_SECONDS:g} s") from None
    finally:  # also when the scenario is cancelled (its bound, Ctrl+C): no orphan left
        if process.returncode is None:
            process.kill()
            await process.wait()
    expect(code == 0, f"{what} exited with {code}: {tail(log)}")


def _stored(db: Path, run_id: str) -> int:
    """Rows the batch has committed to its store so far (0 before the store exists)."""
    if not db.exists():
        return 0
    with contextlib.suppress(ConfigError), RunStore(db) as store:
        run = store.get_run(run_id)
        return run.completed_prompts if run is not None else 0
    return 0


async def batch_survives_sigkill(stack: Stack, trace: Trace) -> None:
    """50 rows; SIGKILL mid-run; ``--resume``: every row answered exactly once."""
    scratch = stack.scratch
    assert scratch is not None
    root = scratch.root
    run_id = f"selftest-{uuid.uuid4().hex[:6]}"
    db, out, log = root / "batch.db", root / "batch-out.json", root / "batch.log"
    common = [
        "--config",
        str(scratch.batch_config),
        "--db",
        str(db),
        "-o",
        str(out),
        "--batch-id",
        run_id,
        "--concurrency",
        "4",
        "--checkpoint",
        "0.1",
    ]
    with log.open("wb") as output:
        first = await start_child(
            "batch", str(scratch.batch_input), *common, cwd=root, output=output
        )
        try:
            await wait_for(
                lambda: _stored(db, run_id) >= KILL_AFTER_ROWS or first.returncode is not None,
                RUN_SECONDS,
                f"the batch stored fewer than {KILL_AFTER_ROWS} rows",
            )
        finally:
            if first.returncode is None:
                first.kill()  # SIGKILL: no cleanup at all
            await first.wait()
        killed_at = _stored(db, run_id)
        expect(killed_at < BATCH_ROWS, f"the batch finished ({first.returncode}) before the kill")
        trace.hop(f"batch {run_id} pid {first.pid} SIGKILL at {killed_at}/{BATCH_ROWS} rows")
        second = await start_child("batch", "--resume", *common, cwd=root, output=output)
        await _finish(second, log, "the resumed batch")
    trace.hop(f"--resume pid {second.pid} exit 0")
    records: list[dict[str, Any]] = json.loads(out.read_text(encoding="utf-8"))
    rows = Counter(int(r["row"]) for r in records)
    twice = sorted(row for row, n in rows.items() if n > 1)
    missing = sorted(set(range(BATCH_ROWS)) - set(rows))
    expect(not twice and not missing, f"rows twice {twice}, rows missing {missing}")
    wrong = [r["row"] for r in records if r.get("response") != f"You said: {r.get('prompt')}"]
    expect(not wrong, f"rows answered with another row's answer: {wrong}")
    with RunStore(db) as store:
        run = store.run(run_id)
    expect(
        run.status == "completed" and run.completed_prompts == BATCH_ROWS,
        f"the store says {run.status}, {run.completed_prompts}/{BATCH_ROWS} rows",
    )
    trace.hop(f"{out.name}: {len(records)} rows, each once; store: {run.status}")


async def explore_two_producers(stack: Stack, trace: Trace) -> None:
    """Two producers explore one topic; both add items, none twice."""
    scratch = stack.scratch
    assert scratch is not None
    root = scratch.root
    folder, log = root / "explore", root / "explore.log"
    with log.open("wb") as output:
        process = await start_child(
            "explore",
            "--topic",
            "odd pairs",
            "--provider",
            EXPLORE_PROVIDER,
            "--producers",
            str(EXPLORE_PRODUCERS),
            "--iterations",
            str(EXPLORE_ITERATIONS),
            "--output",
            str(folder),
            "--progress",
            "off",
            cwd=root,
            output=output,
        )
        await _finish(process, log, "explore")
    meta: dict[str, Any] = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    producers = meta.get("producers") or []
    requests = ", ".join(f"{p['name']} {p['iteration']} requests" for p in producers)
    trace.hop(f"explore pid {process.pid} exit 0: {requests}")
    expect(len(producers) == EXPLORE_PRODUCERS, f"{len(producers)} producers ran")
    expect(
        all(p["iteration"] == EXPLORE_ITERATIONS for p in producers),
        f"producers stopped early: {requests}",
    )
    items = json.loads((folder / "output.json").read_text(encoding="utf-8"))["items"]
    by_producer = Counter(str(i["producer"]) for i in items)
    expect(
        len(by_producer) == EXPLORE_PRODUCERS,
        f"items only from {sorted(by_producer)}, not from every producer",
    )
    lines = (folder / "output.txt").read_text(encoding="utf-8").splitlines()
    counts = meta["counts"]
    dropped = counts["exact_duplicates"] + counts["near_duplicates"]
    shares = ", ".join(f"{name} {n}" for name, n in sorted(by_producer.items()))
    trace.hop(f"{len(items)} items kept ({shares}), {dropped} duplicates dropped")
    expect(
        len(lines) == len(items) == meta["items"],
        f"output.txt, output.json and metadata.json disagree: {len(lines)}, {len(items)}, "
        f"{meta['items']} items",
    )
    expect(len({line.casefold() for line in lines}) == len(lines), "an item appears twice")
    trace.hop(f"output.txt: {len(lines)} lines, each once")
