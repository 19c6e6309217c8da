"""Per-item files (``--output-dir``): the cost of a locked, atomic merge per answer.

(a) N headlines through the scripted provider (no latency, concurrency 64): one run writing
    ``-o out.jsonl`` against one writing ``--output-dir`` (a locked read-modify-write and an
    fsynced rename per answer). Rate = answers / (first request -> last answer), from the
    store, so start-up is left out.
(b) Two processes at once, another model each, merging into the same N files: the wall time
    of both, and a check that every file holds both answers.

    python bench/bench_itemfiles.py [ITEMS]
"""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import child_env, machine


def _args(db: str, *extra: str, model: str = "echo") -> list[str]:
    return [
        sys.executable, "-m", "kryten_llm.batch", "headlines.csv", "--template", "{title}",
        "--provider", f"scripted:{model}", "--concurrency", "64", "--no-log", "-q",
        "--db", db, *extra,
    ]  # fmt: skip


def _rate(db: Path) -> float:
    conn = sqlite3.connect(db)
    try:
        first, last, done = conn.execute(
            "SELECT min(started_at), max(finished_at), count(*) FROM batch_items "
            "WHERE status = 'done'"
        ).fetchone()
    finally:
        conn.close()
    return float(done / (last - first))


def main(items: int) -> None:
    with tempfile.TemporaryDirectory(prefix="kryten-itemfiles-bench-") as tmp:
        directory = Path(tmp)
        with (directory / "headlines.csv").open("w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(["id", "title"])
            writer.writerows((f"h{i}", f"Headline number {i}") for i in range(items))
        for name, extra in (
            ("-o out.jsonl", ["-o", "out.jsonl"]),
            ("--output-dir", ["--output-dir", "items", "--id-column", "id"]),
        ):
            db = f"{name.strip('-').split()[0]}.db"
            subprocess.run(
                _args(db, *extra), cwd=directory, env=child_env(), check=True, capture_output=True
            )
            print(f"(a) {items} answers with {name}: {_rate(directory / db):,.0f} answers/s")
        started = time.perf_counter()
        both = [
            subprocess.Popen(
                _args(f"m{model}.db", "--output-dir", "merged", "--id-column", "id", model=model),
                cwd=directory,
                env=child_env(),
                stderr=subprocess.DEVNULL,
            )
            for model in ("echo", "wordlist")
        ]
        codes = [process.wait() for process in both]
        wall = time.perf_counter() - started
        complete = sum(
            1
            for path in (directory / "merged").glob("*.json")
            if len(json.loads(path.read_text())["llm_models"]) == 2
        )
        print(
            f"(b) two runs merging into the same {items} files at once: {wall:.1f} s wall "
            f"(start-up included), exit codes {codes}, files with both answers: {complete}"
        )
    print(f"machine: {machine()}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
