"""The actions of ``kryten-llm batch`` that read or steer runs instead of running one.

    batch list [-n N] [--status S]              recent runs
    batch status ID                             totals, completed, failed, rate, ETA
    batch cancel ID [--wait]                    stop a run (in any process); resumable
    batch show ID [-n N] [--failed]             a run's answers (or failures, with errors)
    batch logs [-n N] [--search T] [--model M]  the most recent answers of every run

Each reads ``./batch.db`` unless ``--db`` is given and returns an exit code; ``--json``
prints data instead of text. A run whose process died shows as ``interrupted``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from kryten_llm.batch.printing import item_text
from kryten_llm.batch.progress import duration
from kryten_llm.batch.readback import ShownItem, recent_items, run_items
from kryten_llm.batch.store import RunStore, process_alive
from kryten_llm.batch.storetypes import RunStatus
from kryten_llm.console import EXIT_FAILED, EXIT_OK, table
from kryten_llm.errors import ConfigError

ACTIONS = ("list", "status", "cancel", "show", "logs")
LOGS_DEFAULT = 10  # items `batch logs` prints without -n
LIST_DEFAULT = 20  # runs `batch list` prints without -n


def act(args: argparse.Namespace, store: RunStore) -> int:
    """Run the action ``args.target`` against ``store``; returns the exit code."""
    if args.target == "list":
        return _list(args, store)
    if args.target == "logs":
        model = args.models[0] if args.models else None
        items = recent_items(
            store.path, limit=args.n or LOGS_DEFAULT, search=args.search, model=model
        )
        return _print_items(items, as_json=args.json, with_run=True)
    if not args.run_id:
        raise ConfigError([("ID", f"batch {args.target} needs a batch id", "see batch list")])
    if args.target == "show":
        items = run_items(store.path, args.run_id, limit=args.n, failed=args.failed)
        return _print_items(items, as_json=args.json, with_run=False)
    info = store.run(args.run_id)
    if args.target == "status":
        return _status(args, store, info.id)
    return _cancel(store, info.id, wait=args.wait)


def _print_items(items: list[ShownItem], *, as_json: bool, with_run: bool) -> int:
    if as_json:
        print(json.dumps([item.as_dict() for item in items], indent=2, ensure_ascii=False))
        return EXIT_OK
    for item in items:
        text = item_text(
            row=item.row,
            model=item.model,
            status=item.status,
            prompt=item.prompt,
            response=item.response,
            error=item.error,
            run_id=item.run_id if with_run else None,
        )
        print(text)
    return EXIT_OK


def _list(args: argparse.Namespace, store: RunStore) -> int:
    runs = store.list_runs(status=args.status_filter, limit=args.n or args.limit or LIST_DEFAULT)
    if args.json:
        print(json.dumps([r.as_dict() for r in runs], indent=2))
        return EXIT_OK
    rows = [("id", "status", "created", "done", "failed", "total", "model", "input")]
    for r in runs:
        total = "?" if r.total_prompts is None else str(r.total_prompts)
        where = Path(r.input_file).name if r.input_file else "-"
        rows.append(
            (
                r.id,
                r.status,
                r.created_at,
                str(r.completed_prompts),
                str(r.failed_prompts),
                total,
                r.model,
                where,
            )
        )
    for line in table(rows):
        print(line)
    return EXIT_OK


def _status(args: argparse.Namespace, store: RunStore, run_id: str) -> int:
    info = store.run(run_id)
    data = info.as_dict() | {"summary": [s.as_dict() for s in store.summary(info.id)]}
    if args.json:
        print(json.dumps(data, indent=2))
        return EXIT_OK
    print(f"batch {info.id}: {info.status}")
    print(f"  input:     {info.input_file or '-'} -> {info.output_file or '-'}")
    print(f"  models:    {info.model}")
    print(f"  total:     {'?' if info.total_prompts is None else info.total_prompts}")
    print(f"  completed: {info.completed_prompts}")
    print(f"  failed:    {info.failed_prompts}")
    print(f"  rate:      {info.rate_per_second:.1f}/s")
    print(f"  ETA:       {duration(info.eta_seconds)}")
    if info.status is RunStatus.INTERRUPTED:
        print(f"  its process ({info.pid}) is gone: continue with --resume --batch-id {info.id}")
    return EXIT_OK


def _cancel(store: RunStore, run_id: str, *, wait: bool) -> int:
    info = store.run(run_id)
    if info.status in (RunStatus.COMPLETED, RunStatus.CANCELLED):
        print(f"batch {run_id} is already {info.status}", file=sys.stderr)
        return EXIT_FAILED
    if info.status.live and process_alive(info.pid):
        store.request_cancel(run_id)
        print(f"batch {run_id}: cancelling (the run stops within a second)", file=sys.stderr)
        if wait:
            deadline = time.monotonic() + 60
            while store.status_of(run_id) is RunStatus.CANCELLING and time.monotonic() < deadline:
                time.sleep(0.1)
            print(f"batch {run_id}: {store.status_of(run_id)}", file=sys.stderr)
        return EXIT_OK
    # Paused, failed, or interrupted (left 'running' by a process that no longer exists).
    store.cancel(run_id)
    print(f"batch {run_id}: cancelled", file=sys.stderr)
    return EXIT_OK
