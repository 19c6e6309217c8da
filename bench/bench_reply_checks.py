"""Formatter + validator cost per reply (issue: at most 1 ms p99 added per reply).

Runs realistic LLM outputs (short quips, long rambling answers with markdown, think blocks,
boilerplate, URLs and emoji) through ``format_reply`` and ``ReplyValidator.check`` with a
history of ten past replies, as the worker does for every reply.

    python bench/bench_reply_checks.py [N]
"""

from __future__ import annotations

import statistics
import sys
import time

from _harness import machine

from kryten_llm.config import FormattingConfig, PersonalityConfig, ValidationConfig
from kryten_llm.pipeline.formatter import format_reply
from kryten_llm.pipeline.prompt import system_prompt
from kryten_llm.pipeline.validator import ReplyValidator

REPLIES = [
    "Plan 9 is a masterpiece of accidental comedy. 🛸",
    "Sure! Here's the thing: **Ed Wood** shot the *whole* film in a few days, and it shows. "
    "The gravestones wobble, the cockpit is a shower curtain, and night turns to day between "
    "cuts. Honestly? That's the charm. See https://en.wikipedia.org/wiki/Plan_9_from_Outer_Space "
    "for the gory details, and don't get me started on Criswell's narration. 🎬🍿",
    "<think>The user wants trivia about the film. Keep it short.</think>Bela Lugosi died before "
    "filming; his scenes are stock footage and a chiropractor with a cape over his face.",
    "As an AI language model I can't watch movies, but as CynthiaRothbot I can tell you the "
    "saucers were hubcaps. - They were not, actually: model kits.\n\n1. first\n2. second",
    "A long one. " * 60,
]


def main(count: int) -> None:
    fmt = FormattingConfig()
    names = ("CynthiaRothbot", "cynthia", "rothbot")
    users = {f"user{i}" for i in range(40)}
    validator = ReplyValidator(ValidationConfig(), system_prompt(PersonalityConfig()))
    for i in range(10):
        validator.remember(f"an earlier reply number {i} about some other film entirely", "c")
    samples = []
    for i in range(count):
        text = REPLIES[i % len(REPLIES)] + f" ({i})"
        start = time.perf_counter()
        reply = format_reply(text, fmt, bot_names=names, present_users=users)
        validator.check(reply.kept, "c")
        samples.append((time.perf_counter() - start) * 1e6)
    q = statistics.quantiles(samples, n=100)
    print(f"machine: {machine()}")
    print(f"replies: {count}")
    print(f"format + validate p50: {q[49]:.0f} µs, p99: {q[98]:.0f} µs (target p99 <= 1000 µs)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
