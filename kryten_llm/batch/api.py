"""The Python API of batch mode: :func:`run_batch` (async) and :func:`run_batch_sync`.

The same engine as ``kryten-llm batch``, for notebooks and scripts::

    result = run_batch_sync(["Name a cult film", "Name a B-movie"], providers=["scripted"])
    for record in result.records():
        print(record["response"])

Progress is off by default here (``progress=True`` draws it on stderr), and answers are not
printed (``show=True`` prints them). Options not given take the config's ``batch`` defaults.
For ``llm``-style scripts, :mod:`kryten_llm.batch.simple` has ``batch_process`` and
``batch_from_csv``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kryten_llm.batch.discovery import discover
from kryten_llm.batch.estimate import Estimate
from kryten_llm.batch.locking import output_lock
from kryten_llm.batch.options import BatchOptions
from kryten_llm.batch.plan import BatchPlan, make_plan
from kryten_llm.batch.progress import Progress
from kryten_llm.batch.runner import BatchResult, BatchRunner
from kryten_llm.batch.store import RunStore
from kryten_llm.config import Settings

Rows = Iterable[str | Mapping[str, Any]]


def _options(prompts_or_path: Rows | str | Path | None, options: dict[str, Any]) -> BatchOptions:
    options.setdefault("quiet", not options.get("show", False))
    if isinstance(prompts_or_path, str | Path):
        options["input"] = str(prompts_or_path)
    for key in ("providers", "models"):
        value = options.get(key)
        if isinstance(value, str):
            options[key] = (value,)
        elif value is not None:
            options[key] = tuple(value)
    return BatchOptions(**options)


def _rows(prompts_or_path: Rows | str | Path | None) -> Rows | None:
    return (
        None
        if prompts_or_path is None or isinstance(prompts_or_path, str | Path)
        else (prompts_or_path)
    )


async def run_batch(
    prompts_or_path: Rows | str | Path | None = None,
    *,
    settings: Settings | None = None,
    progress: bool = False,
    **options: Any,
) -> BatchResult:
    """Run a batch and return how it ended.

    Args:
        prompts_or_path: an input file (str or Path), or the rows themselves: prompts as
            strings or rows as mappings (columns for ``template``); None with ``resume=True``
            and ``batch_id``.
        settings: the bot's settings (providers, retries...); None loads ``config=`` or the
            defaults plus the environment.
        progress: draw a progress bar on stderr.
        **options: any :class:`~kryten_llm.batch.options.BatchOptions` field (those not
            given take the config's ``batch`` defaults), e.g.
            ``providers=["openai:http://127.0.0.1:8080/v1"]``, ``template="..."``,
            ``output="out.jsonl"``, ``concurrency=16``, ``rate_limit=60``, ``db="batch.db"``.

    Returns:
        The result: id, status, counts, per-model summary; ``records()`` streams the rows.

    Raises:
        ConfigError: a usage problem found before any row is asked (template variable,
            provider, an output another run is writing), a key the server refused or a model
            it does not list (one listing request per HTTP provider, before the run).
        InputError: an input file that cannot be read, before any request; or a malformed row
            found later (the run is then marked failed).
        RunExists: ``batch_id`` names a run already in the store (give ``resume=True``).
        RunNotFound: ``resume=True`` with a ``batch_id`` that is not in the store.
    """
    opts = _options(prompts_or_path, dict(options))
    with RunStore(opts.db) as store:
        plan = make_plan(
            opts, rows=_rows(prompts_or_path), settings=settings, store=store, given=options
        )
        with output_lock(plan.output):
            plan = await discover(plan)
            return await execute(plan, store, progress=Progress(enabled=progress))


async def execute(
    plan: BatchPlan, store: RunStore, *, progress: Progress, runner_hook: Any = None
) -> BatchResult:
    """Run a checked plan (the CLI uses this after its confirmation prompt).

    Args:
        plan: from :func:`~kryten_llm.batch.plan.make_plan`.
        store: the run store.
        progress: the progress display.
        runner_hook: called with the :class:`BatchRunner` before it starts (signal wiring).
    """
    runner = BatchRunner(plan, store, progress)
    if runner_hook is not None:
        runner_hook(runner)
    return await runner.run()


def run_batch_sync(
    prompts_or_path: Rows | str | Path | None = None,
    *,
    settings: Settings | None = None,
    progress: bool = False,
    **options: Any,
) -> BatchResult:
    """:func:`run_batch` for code without an event loop (same arguments)."""
    return asyncio.run(run_batch(prompts_or_path, settings=settings, progress=progress, **options))


def estimate_batch(
    prompts_or_path: Rows | str | Path,
    *,
    settings: Settings | None = None,
    **options: Any,
) -> Estimate:
    """Estimate tokens, cost and time of a batch without sending anything.

    Args:
        prompts_or_path, settings, **options: as for :func:`run_batch`.
    """
    opts = _options(prompts_or_path, dict(options))
    with RunStore(opts.db) as store:
        plan = make_plan(
            opts, rows=_rows(prompts_or_path), settings=settings, store=store, given=options
        )
    return asyncio.run(discover(plan)).estimate()
