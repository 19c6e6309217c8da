"""Parsing, normalisation and the duplicate index of the explorer, checked against brute force."""

from __future__ import annotations

import random

import pytest

from kryten_llm.explore.canon import comparable
from kryten_llm.explore.dedup import DedupIndex, Verdict
from kryten_llm.explore.items import is_header, jaccard, parse_items, shingles
from kryten_llm.pools import normalize


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("  The   MATRIX!! ", "the matrix", id="case-space-punctuation"),
        pytest.param("Don’t Look Up", "dont look up", id="apostrophe"),
        pytest.param("ﬁght club", "fight club", id="nfkc-ligature"),
        pytest.param("Straße", "strasse", id="casefold"),
        pytest.param("Alien (1979) — Ridley Scott", "alien 1979 ridley scott", id="dash-parens"),
        pytest.param("?!…", "", id="only-punctuation"),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_parse_items_strips_markers_and_drops_reasoning() -> None:
    """Bullets, numbers, quotes, emphasis go; think blocks and fences vanish; headers stay."""
    answer = (
        "<think>they want films</think>Here are more:\n\n1. **The Thing**\n2) 'Alien'\n"
        "- Brazil\n* [3] no\n• Dune\n```\n#4 Heat\n(5) Ran\na) Them!\n"
    )
    assert parse_items(answer) == [
        "Here are more:",
        "The Thing",
        "Alien",
        "Brazil",
        "no",
        "Dune",
        "Heat",
        "Ran",
        "Them!",
    ]
    assert is_header("Here are more:")
    assert not is_header("Dune")


def test_exact_and_near_duplicates_are_told_apart() -> None:
    index = DedupIndex(0.85)
    assert index.check_and_add("crimson harbor lantern festival").verdict is Verdict.NEW
    assert index.check("Crimson Harbor, Lantern-Festival!").verdict is Verdict.EXACT
    near = index.check("crimson harbour lantern festival")
    assert near.verdict is Verdict.NEAR
    assert near.match == 0
    assert near.score >= 0.85
    assert index.check("crimson harbor tiger parade").verdict is Verdict.NEW
    assert index.check("...").verdict is Verdict.EMPTY
    assert len(index) == 1


def test_threshold_one_only_catches_exact_duplicates() -> None:
    index = DedupIndex(1.0)
    index.add("crimson harbor lantern festival")
    assert index.check("crimson harbor lantern festivals").verdict is Verdict.NEW
    assert index.check("CRIMSON harbor lantern festival").verdict is Verdict.EXACT


@pytest.mark.parametrize("threshold", [0.3, 0.6, 0.85, 0.95])
def test_index_agrees_with_brute_force(threshold: float) -> None:
    """On random items with many edited copies, every verdict equals the all-pairs answer of
    the same measure (Jaccard of canonical trigrams, identifiers equal): the index is exact.
    The words include numbers, lone letters, articles and plurals, so every rule is hit."""
    rng = random.Random(threshold)
    words = ["".join(rng.choices("abcdefghij", k=rng.randint(2, 7))) for _ in range(60)]
    words += ["the", "a", "12", "13", "c", "d", "ii", "iii", "seven", "boxes", "box"]
    items: list[str] = []
    for _ in range(1500):
        if items and rng.random() < 0.5:
            chars = list(rng.choice(items))
            for _ in range(rng.randint(0, 3)):
                chars.insert(rng.randint(0, len(chars)), rng.choice("abcdefghij -"))
            items.append("".join(chars))
        else:
            items.append(" ".join(rng.choices(words, k=rng.randint(1, 5))))
    index = DedupIndex(threshold)
    kept: list[tuple[tuple[str, ...], set[str]]] = []
    kept_norm: set[str] = set()
    for item in items:
        verdict = index.check_and_add(item).verdict
        norm = normalize(item)
        form = comparable(item)
        grams = (form.key, shingles(form.text))
        if not norm:
            expected = Verdict.EMPTY
        elif norm in kept_norm:
            expected = Verdict.EXACT
        elif any(key == grams[0] and jaccard(grams[1], other) >= threshold for key, other in kept):
            expected = Verdict.NEAR
        else:
            expected = Verdict.NEW
        assert verdict is expected, item
        if verdict is Verdict.NEW:
            kept.append(grams)
            kept_norm.add(norm)
