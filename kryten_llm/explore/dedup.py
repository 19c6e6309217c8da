"""Duplicate checking of explored items: exact by hash, near by trigram Jaccard, both exact.

Every item any producer finds goes through one :class:`DedupIndex`, which answers "new",
"exact duplicate" (same normalised text, compared by a 16-byte hash) or "near duplicate" (the
same identifiers as some known item, and a Jaccard similarity of the character trigrams of
their canonical forms of at least ``threshold``: see :mod:`kryten_llm.explore.canon`, where
"fiddle ferns" is "fiddle fern" and "Tip 12" is not "Tip 13"). :func:`~.items.similarity` is
the same measure between two items, for brute-force checks.

Near duplicates are found with an inverted index (trigram -> ids of the items holding it) and
a pigeonhole filter, not with MinHash: the answer is exact, never probabilistic. A known item
``y`` with Jaccard(x, y) >= t shares at least ``ceil(t * |x|)`` of the ``n = |x|`` trigrams of
the query ``x``, so it misses at most ``p - 1`` of them, where ``p = n - ceil(t * n) + 1``.
Deal x's trigrams into ``p`` groups: ``y`` must hold every trigram of at least one group. So
the candidates are the union, over the groups, of the intersection of the groups' posting sets
(C-speed set operations); each candidate outside the length bounds ``[t * n, n / t]`` or with
other identifiers is skipped, the others get an exact Jaccard check. Trigrams are dealt
round-robin in reading order, so that every group spans the whole item: a group made of the
trigrams of one word would match every item holding that word, while a group spread over all
words matches little more than the item's near duplicates, even when the vocabulary is tiny (a
300-word list has only a few thousand trigrams, each in hundreds of items).

The index keeps, per item, its trigram ids in an ``array`` (for the exact check) and each id
in the posting sets, so 100,000 items take on the order of 100 MB and a check costs well under
a millisecond (``bench/bench_dedup.py``). A threshold of 1.0 skips all of this: only exact
duplicates are looked for.
"""

from __future__ import annotations

import enum
import math
from array import array
from dataclasses import dataclass

from kryten_llm.explore.canon import Comparable, comparable
from kryten_llm.explore.items import SHINGLE, item_hash, shingles
from kryten_llm.pools import normalize

DEFAULT_THRESHOLD = 0.8  # precision and recall on tests/data/dedup_pairs.tsv: BENCHMARKS.md
_EMPTY: frozenset[int] = frozenset()


class Verdict(enum.Enum):
    """What the index thinks of one candidate item."""

    NEW = "new"
    EXACT = "exact"
    NEAR = "near"
    EMPTY = "empty"  # nothing left after normalisation


@dataclass(frozen=True, slots=True)
class Check:
    """The verdict on one item, with the known item it duplicates (an index) when it does."""

    verdict: Verdict
    normalized: str
    match: int | None = None
    score: float = 0.0


class DedupIndex:
    """All items known so far, for exact and near-duplicate checks.

    Args:
        threshold: Jaccard similarity (0 < t <= 1) at or above which an item is a near
            duplicate; 1.0 turns near-duplicate detection into exact-duplicate detection. Taken
            as given: :class:`~kryten_llm.explore.settings.ExploreSettings` checks it.
    """

    def __init__(self, threshold: float = DEFAULT_THRESHOLD) -> None:
        self.threshold = threshold
        self._hashes: dict[bytes, int] = {}
        self._token_ids: dict[str, int] = {}
        self._items: list[array[int]] = []  # token ids of each item
        self._postings: dict[int, set[int]] = {}
        self._keys: dict[int, tuple[str, ...]] = {}  # identifiers, of the items that have some
        self._last: tuple[str, Comparable] = ("", comparable(""))  # check_and_add: one per item

    def __len__(self) -> int:
        return len(self._items)

    def check(self, text: str) -> Check:
        """Classify ``text`` against every known item, without adding it.

        Args:
            text: an item as parsed from an answer.

        Returns:
            The verdict; for duplicates, ``match`` is the index of the known item.
        """
        normalized = normalize(text)
        if not normalized:
            return Check(Verdict.EMPTY, normalized)
        known = self._hashes.get(item_hash(normalized))
        if known is not None:
            return Check(Verdict.EXACT, normalized, known, 1.0)
        if self.threshold >= 1.0:
            return Check(Verdict.NEW, normalized)
        canonical = self._comparable(text)
        key = canonical.key
        keys = self._keys
        padded = f" {canonical.text} "
        # Trigrams in reading order (first occurrence), so that groups can span the whole item.
        grams = list(dict.fromkeys(padded[i : i + SHINGLE] for i in range(len(padded) - 2)))
        ids = self._token_ids
        postings = self._postings
        size = len(grams)
        posting_sets = [
            postings[token] if (token := ids.get(gram)) is not None else _EMPTY for gram in grams
        ]
        query = {ids[g] for g in grams if g in ids}
        groups = self._prefix_length(size)
        low = self.threshold * size - 1e-9
        high = size / self.threshold + 1e-9
        seen: set[int] = set()
        for first in range(groups):
            members = sorted(posting_sets[first::groups], key=len)
            if not members[0]:
                continue  # a trigram no known item has: nothing holds the whole group
            candidates = members[0].intersection(*members[1:]) if len(members) > 1 else members[0]
            for candidate in candidates - seen if seen else candidates:
                other = self._items[candidate]
                if not low <= len(other) <= high or keys.get(candidate, ()) != key:
                    continue
                common = sum(1 for t in other if t in query)
                score = common / (size + len(other) - common)
                if score >= self.threshold - 1e-12:
                    return Check(Verdict.NEAR, normalized, candidate, score)
            seen |= candidates
        return Check(Verdict.NEW, normalized)

    def add(self, text: str) -> int:
        """Record ``text`` as known, whatever it duplicates.

        Returns:
            Its index, or -1 when it is empty after normalisation.
        """
        normalized = normalize(text)
        if not normalized:
            return -1
        index = len(self._items)
        self._hashes.setdefault(item_hash(normalized), index)
        canonical = self._comparable(text)
        if canonical.key:
            self._keys[index] = canonical.key
        ids = self._token_ids
        tokens = []
        for gram in shingles(canonical.text):
            token = ids.get(gram)
            if token is None:
                token = ids[gram] = len(ids)
            tokens.append(token)
        self._items.append(array("l", tokens))
        if self.threshold < 1.0:
            postings = self._postings
            for token in tokens:
                bucket = postings.get(token)
                if bucket is None:
                    postings[token] = {index}
                else:
                    bucket.add(index)
        return index

    def check_and_add(self, text: str) -> Check:
        """:meth:`check`, then :meth:`add` when the item is new."""
        result = self.check(text)
        if result.verdict is Verdict.NEW:
            self.add(text)
        return result

    def _comparable(self, text: str) -> Comparable:
        """:func:`comparable`, computed once when :meth:`add` follows :meth:`check`."""
        last_text, form = self._last
        if text != last_text:
            form = comparable(text)
            self._last = (text, form)
        return form

    def _prefix_length(self, size: int) -> int:
        """How many trigrams a near duplicate of a ``size``-trigram item may miss, plus one."""
        return size - math.ceil(self.threshold * size - 1e-9) + 1
