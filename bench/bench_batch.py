"""Batch mode: throughput at concurrency 64 against a 50 ms model, and peak memory on 1M rows.

(a) 10,000 prompts through the scripted provider (``latency_ms=50``) with 64 requests in
    flight: the ideal is 64 / 0.05 s = 1,280 requests/s; target >= 95 % of it. Measured in a
    child process (``python -m kryten_llm.batch``) from the run's own elapsed time, store
    commits and output file included.
(b) A 1,000,000-row CSV generated in a temp dir, run to the end (scripted, no latency); the
    child's peak RSS (``ru_maxrss``) must stay under 200 MB.

    python bench/bench_batch.py [PROMPTS] [ROWS]
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import child_env, machine


def _config(directory: Path, latency_ms: float) -> Path:
    path = directory / "config.json"
    path.write_text(
        json.dumps(
            {
                "llm": {
                    "providers": {
                        "model": {"type": "scripted", "model": "echo", "latency_ms": latency_ms}
                    },
                    "default_provider": "model",
                },
                "logging": {"response_log_dir": str(directory / "logs")},
            }
        )
    )
    return path


def _run(directory: Path, *args: str) -> tuple[float, float, str]:
    """Run the batch CLI in a child; (wall seconds, child peak RSS in MB, stderr)."""
    env = child_env()
    code = (
        "import resource, runpy, sys;"
        "sys.argv = ['kryten-llm batch', *sys.argv[1:]];"
        "rc = 0\n"
        "try:\n runpy.run_module('kryten_llm.batch', run_name='__main__')\n"
        "except SystemExit as e:\n rc = e.code or 0\n"
        "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
        "sys.exit(rc)"
    )
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"batch failed ({result.returncode}):\n{result.stderr[-2000:]}")
    match = re.search(r"MAXRSS (\d+)", result.stderr)
    rss_mb = int(match.group(1)) / 1024 if match else float("nan")
    return wall, rss_mb, result.stderr


def throughput(prompts: int) -> None:
    with tempfile.TemporaryDirectory(prefix="kryten-batch-bench-") as tmp:
        directory = Path(tmp)
        (directory / "in.txt").write_text("".join(f"prompt number {i}\n" for i in range(prompts)))
        config = _config(directory, 50)
        args = ["in.txt", "--config", str(config), "--concurrency", "64", "--no-log"]
        args += ["-o", "out.jsonl", "--db", "bench.db"]
        wall, rss, _stderr = _run(directory, *args)
        db = directory / "bench.db"
        import sqlite3

        conn = sqlite3.connect(db)
        try:
            first, last, done = conn.execute(
                "SELECT min(started_at), max(finished_at), count(*) FROM batch_items "
                "WHERE status = 'done'"
            ).fetchone()
        finally:
            conn.close()
    span = last - first
    rate = done / span
    ideal = 64 / 0.05
    print(f"throughput: {done} prompts, concurrency 64, scripted latency 50 ms")
    print(f"  first request -> last answer: {span:.2f} s, {rate:.0f} requests/s")
    print(f"  ideal {ideal:.0f}/s: {rate / ideal * 100:.1f} % (target >= 95 %)")
    print(f"  whole command (start-up, counting, output file): {wall:.2f} s, peak RSS {rss:.0f} MB")


def memory(rows: int) -> None:
    with tempfile.TemporaryDirectory(prefix="kryten-batch-bench-") as tmp:
        directory = Path(tmp)
        path = directory / "big.csv"
        with path.open("w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(["id", "title", "prompt"])
            for i in range(rows):
                writer.writerow([i, f"Film {i}", f"Say something short about film number {i}"])
        size_mb = path.stat().st_size / 1e6
        config = _config(directory, 0)
        args = ["big.csv", "--config", str(config), "--concurrency", "64", "--no-log"]
        args += ["-o", "out.csv", "--db", "bench.db"]
        wall, rss, _ = _run(directory, *args)
        out_rows = sum(1 for _ in (directory / "out.csv").open(encoding="utf-8")) - 1
    print(f"memory: {rows} rows ({size_mb:.0f} MB CSV) answered and written in {wall:.0f} s")
    print(f"  output rows: {out_rows}; peak RSS of the batch process: {rss:.0f} MB (target < 200)")


if __name__ == "__main__":
    print(f"machine: {machine()}")
    throughput(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
    memory(int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000)
