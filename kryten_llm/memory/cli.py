"""``kryten-llm memory list [USER] | forget USER``: the operator's view of the memory store.

Works on the SQLite file (``--db``, or ``memory.path`` of ``--config``) whether or not the bot
runs: a running bot notices the change within ``memory.refresh_seconds``. Output is what
:func:`~kryten_llm.memory.commands.handle_memory_command` answers, as a table or ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kryten_llm.console import EXIT_FAILED, EXIT_OK, EXIT_USAGE, table


def add_parser(subparsers: Any) -> None:
    """Add the ``memory`` subcommand to ``subparsers`` (from ``add_subparsers``)."""
    parser = subparsers.add_parser(
        "memory",
        help="list or forget what the bot remembers about a user",
        description="List or delete the notes in the memory store, by user.",
    )
    parser.add_argument("action", choices=["list", "forget"])
    parser.add_argument("user", nargs="?", help="the CyTube user name (any case)")
    parser.add_argument("--db", type=Path, metavar="FILE", help="the memory store")
    parser.add_argument("--config", type=Path, metavar="FILE", help="read memory.path from it")
    parser.add_argument("--domain", help="only notes from this CyTube domain")
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")


def run(args: argparse.Namespace) -> int:
    """Run ``kryten-llm memory``; returns the exit code."""
    from kryten_llm.errors import ConfigError, MemoryStoreError
    from kryten_llm.memory.commands import handle_memory_command
    from kryten_llm.memory.store import MemoryStore

    path = args.db
    if path is None:
        from kryten_llm.config import load_settings

        try:
            path = load_settings(args.config).memory.path
        except ConfigError as exc:
            print(exc.report("kryten-llm memory: invalid configuration:"), file=sys.stderr)
            return EXIT_USAGE
    if not Path(path).is_file():
        print(f"kryten-llm memory: no memory store at {path}", file=sys.stderr)
        return EXIT_FAILED
    try:
        store = MemoryStore.open(path)
    except MemoryStoreError as exc:
        print(f"kryten-llm memory: {exc}", file=sys.stderr)
        return EXIT_FAILED
    try:
        answer = handle_memory_command(
            store, {"action": args.action, "user": args.user, "domain": args.domain}
        )
    finally:
        store.close()
    if args.json:
        print(json.dumps(answer, indent=2, ensure_ascii=False))
    elif not answer["ok"]:
        print(f"kryten-llm memory: {answer['error']}", file=sys.stderr)
    elif args.action == "forget":
        print(f"deleted {answer['deleted']} notes about or by {args.user}")
    else:
        _print_notes(answer["notes"])
    return EXIT_OK if answer["ok"] else EXIT_USAGE


def _print_notes(notes: list[dict[str, Any]]) -> None:
    rows = [("id", "stored (UTC)", "where", "about", "by", "source", "note")]
    for note in notes:
        stored = datetime.fromtimestamp(float(note["created_at"]), UTC)
        rows.append(
            (
                str(note["id"]),
                stored.strftime("%Y-%m-%d %H:%M"),
                f"{note['channel']} on {note['domain']}",
                note["about"] or "(channel)",
                str(note["author"]),
                str(note["source"]),
                str(note["text"]),
            )
        )
    for line in table(rows, last_free=True):
        print(line)
    print(f"{len(notes)} notes")
