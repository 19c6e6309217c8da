"""Validator cost per reply as the responder spends it: checked, then remembered once sent.

A whole reply is ``check`` then ``remember``; a streamed reply of K parts is judged part by
part (each against the parts before it) and then remembered whole. Runs against whichever
checkout comes first on ``PYTHONPATH`` (this bench does not import the harness, which would put
this checkout first), and speaks both the per-reply part checks and the older
``check_part(sent, part)``, so one script measures before and after:

    PYTHONPATH=<checkout> python bench/bench_validator.py [N]
"""

from __future__ import annotations

import os
import platform
import random
import statistics
import string
import sys
import time
from collections.abc import Callable

from kryten_llm.config import PersonalityConfig, ValidationConfig
from kryten_llm.pipeline import validator as validator_module
from kryten_llm.pipeline.prompt import system_prompt
from kryten_llm.pipeline.validator import ReplyValidator, Verdict

RNG = random.Random(7)
WORDS = [
    "".join(RNG.choice(string.ascii_lowercase) for _ in range(RNG.randint(2, 9)))
    for _ in range(3000)
]


def sentence() -> str:
    """Sixteen words no recent reply shares a run of: every check passes, as most do."""
    return " ".join(RNG.choice(WORDS) for _ in range(16)).capitalize() + "."


def part_checker(validator: ReplyValidator, channel: str) -> Callable[[str], Verdict]:
    """Judge the parts of one streamed reply in turn, with whichever API the checkout has."""
    if hasattr(validator, "parts"):
        return validator.parts(channel).admit  # type: ignore[no-any-return]
    sent: list[str] = []

    def check(part: str) -> Verdict:
        verdict: Verdict = validator.check_part(" ".join(sent), part, channel)  # type: ignore[attr-defined]
        if verdict.ok:
            sent.append(part)
        return verdict

    return check


def measure(count: int, parts: int) -> tuple[float, float]:
    """p50 and p99 in µs of one reply of ``parts`` parts (0: a whole reply, not streamed)."""
    validator = ReplyValidator(ValidationConfig(), system_prompt(PersonalityConfig()))
    samples = []
    for i in range(count):
        channel = f"c{i % 50}"  # ten replies of history per channel, as an evening has
        chunks = [sentence() for _ in range(parts or 3)]
        start = time.perf_counter()
        if parts:
            admit = part_checker(validator, channel)
            for chunk in chunks:
                if not admit(chunk).ok:
                    raise AssertionError(f"refused: {chunk}")
        else:
            if not validator.check(" ".join(chunks), channel).ok:
                raise AssertionError("refused")
        validator.remember(" ".join(chunks), channel)
        samples.append((time.perf_counter() - start) * 1e6)
    q = statistics.quantiles(samples, n=100)
    return q[49], q[98]


def main(count: int) -> None:
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"validator: {validator_module.__file__}")
    print(f"replies: {count} per shape")
    for parts in (0, 3, 8):
        p50, p99 = measure(count, parts)
        shape = f"streamed, {parts} parts" if parts else "whole, 3 sentences"
        print(f"check + remember, {shape}: p50 {p50:.0f} µs, p99 {p99:.0f} µs")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5_000)
