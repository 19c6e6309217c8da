"""How long ``kryten-llm selftest`` takes, end to end and per scenario.

The self-test runs as an operator runs it (``python -m kryten_llm selftest``), several times;
the figures are its wall time from spawn to exit (interpreter start, stack start, scenarios,
teardown), the stack start it reports, and each scenario's time as it prints it. Every run
must pass.

python bench/bench_selftest.py          # 5 runs (BENCH_RUNS to change)
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from collections import defaultdict

from _harness import ROOT, child_env, machine

LINE = re.compile(r"^(PASS|FAIL)  (.+?)\s+(\d+\.\d\d) s  ")
STACK = re.compile(r"^stack up in (\d+\.\d) s")


def main() -> int:
    runs = int(os.environ.get("BENCH_RUNS", "5"))
    env = child_env()
    walls: list[float] = []
    stacks: list[float] = []
    scenarios: defaultdict[str, list[float]] = defaultdict(list)
    for _ in range(runs):
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "kryten_llm", "selftest"],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=120,
            check=False,
        )
        walls.append(time.monotonic() - started)
        if result.returncode != 0:
            print(result.stdout, result.stderr, sep="\n")
            return 1
        for line in result.stdout.splitlines():
            if match := LINE.match(line):
                scenarios[match.group(2)].append(float(match.group(3)))
            elif match := STACK.match(line):
                stacks.append(float(match.group(1)))
    print(f"machine: {machine()}; {runs} runs, all passed")
    print(f"{'':34}  median    max")
    for name, values in [("whole selftest (spawn to exit)", walls), ("stack start", stacks)]:
        print(f"{name:34}  {statistics.median(values):5.2f} s  {max(values):5.2f} s")
    for name, values in scenarios.items():
        print(f"  {name:32}  {statistics.median(values):5.2f} s  {max(values):5.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
