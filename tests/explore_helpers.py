"""Helpers of the explorer tests: a responder that plays an overlapping list-making model, and
checks that the output holds no duplicates and that the counters add up.

:class:`ItemResponder` plugs into ``ScriptedOpenAIServer(responder=...)``. Each answer mixes
fresh items (random four-word phrases), exact repeats, case and punctuation variants (exact
duplicates once normalised) and near duplicates (a plural, an added "the"), written with the
bullets and numbering real models use, sometimes under a header line. Several servers with
different seeds overlap with each other because they draw from the same small vocabulary and
repeat what the others' share of it produced.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

from kryten_llm.explore.canon import comparable
from kryten_llm.explore.dedup import DEFAULT_THRESHOLD
from kryten_llm.explore.items import jaccard, shingles
from kryten_llm.pools import normalize

_WORDS = (
    "marigold tangerine obsidian lighthouse carnival porcupine velvet harmonica lantern "
    "cathedral meadowlark sandstone thunderbolt caravan gondola pinwheel moonstone orchard "
    "labyrinth starlight windmill cinnamon trombone glacier fireplace woodpecker hurricane "
    "amethyst parachute snowflake telescope marzipan sunflower whirlpool backpack driftwood"
)
VOCABULARY = _WORDS.split()

# Items every server says now and then: the overlap between providers.
SHARED = [
    " ".join(words)
    for words in itertools.islice(itertools.permutations(VOCABULARY[:12], 4), 0, 4000, 97)
]


def variant(item: str, rng: random.Random) -> str:
    """A duplicate of ``item``: an exact one after normalisation, or a near one."""
    kind = rng.randrange(6)
    if kind == 0:
        return item.upper()
    if kind == 1:
        return item.title() + "!"
    if kind == 2:
        return item.replace(" ", " - ", 1) + "."
    if kind == 3:
        return f'"{item}"'
    return item + "s" if kind == 4 else "the " + item  # the same item: a near duplicate


class ItemResponder:
    """Builds list answers from chat-completion requests (see the module docstring).

    Args:
        seed: this server's random seed.
        per_reply: lines per answer.
        fresh: share of lines that are new phrases (the rest repeat something).
    """

    def __init__(self, seed: int, per_reply: int = 10, fresh: float = 0.5) -> None:
        self.rng = random.Random(seed)
        self.per_reply = per_reply
        self.fresh = fresh
        self.said: list[str] = []
        self.prompts: list[str] = []

    def __call__(self, body: dict[str, Any]) -> str:
        self.prompts.append(body["messages"][-1]["content"])
        rng = self.rng
        lines = ["Here are some more items:"] if rng.random() < 0.2 else []
        for n in range(1, self.per_reply + 1):
            roll = rng.random()
            if roll < self.fresh or not self.said:
                item = " ".join(rng.sample(VOCABULARY, 4))
                self.said.append(item)
            elif roll < self.fresh + 0.15:
                item = rng.choice(SHARED)
            elif roll < self.fresh + 0.3:
                item = rng.choice(self.said)
            else:
                item = variant(rng.choice(self.said), rng)
            marker = rng.choice(["- ", "* ", f"{n}. ", f"{n}) ", "", "• "])
            lines.append(marker + item)
        return "\n".join(lines)


class SameItems:
    """A responder that always gives the same ten items: the yield falls to zero."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, body: dict[str, Any]) -> str:
        self.calls += 1
        return "\n".join(f"- {' '.join(VOCABULARY[i : i + 3])}" for i in range(10))


def assert_no_duplicates(lines: list[str], threshold: float = DEFAULT_THRESHOLD) -> None:
    """No two lines are equal once normalised, nor near duplicates by the measure of
    :func:`~kryten_llm.explore.items.similarity` (>= ``threshold``).

    Brute force over every pair, independent of the index under test.
    """
    normalized = [normalize(line) for line in lines]
    assert all(normalized), "an empty item was kept"
    assert len(set(normalized)) == len(normalized), "an exact duplicate was kept"
    forms = [comparable(line) for line in lines]
    sets = [shingles(form.text) for form in forms]
    for i, j in itertools.combinations(range(len(lines)), 2):
        if forms[i].key != forms[j].key:
            continue
        score = jaccard(sets[i], sets[j])
        assert score < threshold, f"near duplicates kept: {lines[i]!r} / {lines[j]!r} ({score})"


def assert_counts_add_up(metadata: dict[str, Any], items: int) -> None:
    """received = new + exact + near + rejected, in total and per provider; new = items."""
    counts = metadata["counts"]
    parts = ("new", "exact_duplicates", "near_duplicates", "rejected")
    assert counts["received"] == sum(counts[p] for p in parts), counts
    assert counts["new"] == items == metadata["items"]
    providers = metadata["providers"].values()
    for entry in providers:
        assert entry["received"] == sum(entry[p] for p in parts), entry
    for key in ("received", "requests", "responses", *parts):
        assert counts[key] == sum(entry[key] for entry in providers), key


def read_run(folder: Path) -> tuple[list[dict[str, Any]], list[str], dict[str, Any]]:
    """output.json's items, output.txt's lines and metadata.json of a run folder."""
    items = json.loads((folder / "output.json").read_text())["items"]
    lines = (folder / "output.txt").read_text().splitlines()
    metadata = json.loads((folder / "metadata.json").read_text())
    return items, lines, metadata


class Gated:
    """The same ten items (no yield) until :attr:`open` is set, then fresh ones from ``then``.

    A run with ``--min-yield 0`` and a target above ten keeps asking, without finishing, until
    the test opens the gate; then it reaches its target and ends by itself (exit 0).
    """

    def __init__(self, then: ItemResponder) -> None:
        self.open = False
        self._same = SameItems()
        self._then = then

    def __call__(self, body: dict[str, Any]) -> str:
        return self._then(body) if self.open else self._same(body)
