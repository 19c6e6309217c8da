"""Duplicate checking cost per item with 100,000 items already known (target: under 1 ms).

Fills a :class:`DedupIndex` with N unique items, then times ``check`` on a mix of new items,
exact duplicates (case and punctuation variants) and near duplicates (a plural, a typo, an
added word), as the explorer does for every line a model returns. Two vocabularies: varied
phrases (many distinct trigrams, like real lists) and the explorer's own 319-word list (few
distinct trigrams: long posting lists, the hard case).

    python bench/bench_dedup.py [N]
"""

from __future__ import annotations

import random
import resource
import statistics
import sys
import time

from _harness import machine

from kryten_llm.explore.dedup import DedupIndex, Verdict
from kryten_llm.llm.scripted import load_wordlist

QUERIES = 5_000


def syllable_words(rng: random.Random, count: int) -> list[str]:
    consonants, vowels = "bcdfghjklmnprstvwz", "aeiou"
    return [
        "".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(rng.randint(2, 4)))
        for _ in range(count)
    ]


def phrase(rng: random.Random, words: list[str], low: int, high: int) -> str:
    text = " ".join(rng.choice(words) for _ in range(rng.randint(low, high)))
    return text.title() if rng.random() < 0.3 else text


def edit(rng: random.Random, text: str) -> str:
    kind = rng.randrange(5)
    if kind == 0:
        return text.upper()
    if kind == 1:
        return text + "!"
    if kind == 2:
        return text + "s"
    if kind == 3:
        pos = rng.randrange(len(text))
        return text[:pos] + rng.choice("aeiou") + text[pos + 1 :]
    return "the " + text


def scenario(name: str, words: list[str], low: int, high: int, count: int) -> None:
    rng = random.Random(42)
    index = DedupIndex()
    known: list[str] = []
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    while len(index) < count:
        text = phrase(rng, words, low, high)
        if index.check_and_add(text).verdict is Verdict.NEW:
            known.append(text)
    fill = time.perf_counter() - started
    rss = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    queries = [
        phrase(rng, words, low, high) if rng.random() < 0.5 else edit(rng, rng.choice(known))
        for _ in range(QUERIES)
    ]
    samples = []
    verdicts: dict[str, int] = {}
    for text in queries:
        start = time.perf_counter()
        verdict = index.check(text).verdict
        samples.append((time.perf_counter() - start) * 1e6)
        verdicts[verdict.value] = verdicts.get(verdict.value, 0) + 1
    q = statistics.quantiles(samples, n=100)
    print(f"-- {name}: {count:,} items known (filled in {fill:.1f} s, ~{rss:.0f} MB more RSS)")
    print(f"   verdicts of {QUERIES:,} checks: {verdicts}")
    print(
        f"   check per item: mean {statistics.fmean(samples):.0f} µs, p50 {q[49]:.0f} µs, "
        f"p99 {q[98]:.0f} µs, max {max(samples):.0f} µs (target < 1000 µs)"
    )


def main(count: int) -> None:
    print(f"machine: {machine()}")
    scenario("varied phrases", syllable_words(random.Random(1), 20_000), 2, 6, count)
    scenario("explorer word list", load_wordlist(), 2, 4, count)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
