"""Precision and recall of the explorer's duplicate judgement on the labelled pairs.

Each pair of ``tests/data/dedup_pairs.tsv`` is judged by the real :class:`DedupIndex`: ``b``
against an index that knows ``a``; "same" is an exact or near verdict. Prints precision and
recall at several thresholds (the default marked) and, at the default, the share right per
category.

    python bench/bench_judgement.py
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from _harness import machine

from kryten_llm.explore.dedup import DEFAULT_THRESHOLD, DedupIndex, Verdict

PAIRS = Path(__file__).resolve().parent.parent / "tests" / "data" / "dedup_pairs.tsv"
THRESHOLDS = (0.7, 0.75, 0.8, 0.85, 0.9)


def pairs() -> list[list[str]]:
    rows = [line.split("\t") for line in PAIRS.read_text("utf-8").splitlines()]
    return [row for row in rows if row[0] in ("same", "different")]


def same(threshold: float, a: str, b: str) -> bool:
    index = DedupIndex(threshold)
    index.add(a)
    return index.check(b).verdict in (Verdict.EXACT, Verdict.NEAR)


def main() -> None:
    rows = pairs()
    print(f"machine: {machine()}")
    print(f"{len(rows)} labelled pairs ({sum(r[0] == 'same' for r in rows)} same)")
    for threshold in sorted({*THRESHOLDS, DEFAULT_THRESHOLD}):
        tp = fp = fn = 0
        right: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for label, category, a, b in rows:
            said = same(threshold, a, b)
            right[(label, category)][0] += said == (label == "same")
            right[(label, category)][1] += 1
            tp += said and label == "same"
            fp += said and label != "same"
            fn += not said and label == "same"
        mark = "  (default)" if threshold == DEFAULT_THRESHOLD else ""
        print(
            f"threshold {threshold:.2f}: precision {tp / (tp + fp):.3f}, recall "
            f"{tp / (tp + fn):.3f} ({fp} false duplicates, {fn} missed){mark}"
        )
        if threshold == DEFAULT_THRESHOLD:
            for (label, category), (ok, total) in sorted(right.items()):
                print(f"    {label:9} {category:17} {ok}/{total}")


if __name__ == "__main__":
    main()
