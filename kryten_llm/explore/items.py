"""Items of a model's answer: parsing, and the measures duplicate checking uses.

The first stage of the topic explorer. A model's answer is cut into candidate items (one per
line, bullets and numbering stripped, headers and reasoning blocks dropped) by
:func:`parse_items`. Each item is compared in the form :func:`kryten_llm.pools.normalize` gives
(``"The  Matrix!"`` and ``"the matrix"`` are the same item, for the explorer and for the
fallback pools alike); :func:`item_hash` keys exact-duplicate checking and :func:`shingles`
gives the character trigrams that near-duplicate checking measures with Jaccard similarity,
over the canonical form of :mod:`kryten_llm.explore.canon` (see :mod:`kryten_llm.explore.dedup`
and :func:`similarity`).
"""

from __future__ import annotations

import hashlib
import re

from kryten_llm.explore.canon import comparable

# "- ", "* ", "• ", "1. ", "2) ", "(3) ", "[4] ", "#5 ", "a) " and repeats of them.
_BULLET = re.compile(
    r"^\s*(?:(?:[-*•·‣▪◦–—+>]+|\(?\d{1,4}[.):\]]|\[\d{1,4}\]|#\d{1,4}[.:)]?|\(?[a-zA-Z]\))\s+)+"
)
_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL | re.IGNORECASE)
_EMPHASIS = re.compile(r"^(\*\*|__|\*|_|`)(.+)\1$")
_QUOTES = "\"'“”‘’«»`"
SHINGLE = 3


def item_hash(normalized: str) -> bytes:
    """A 16-byte digest of a normalised item: the key of exact-duplicate checking."""
    return hashlib.blake2b(normalized.encode(), digest_size=16).digest()


def shingles(normalized: str) -> set[str]:
    """The character trigrams of ``" " + normalized + " "`` (word edges count as characters).

    Args:
        normalized: the output of :func:`normalize`.

    Returns:
        The set of trigrams; empty for an empty string.
    """
    if not normalized:
        return set()
    padded = f" {normalized} "
    return {padded[i : i + SHINGLE] for i in range(len(padded) - SHINGLE + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    """``|a ∩ b| / |a ∪ b|``; 1.0 for two empty sets."""
    if not a and not b:
        return 1.0
    common = len(a & b)
    return common / (len(a) + len(b) - common)


def similarity(a: str, b: str) -> float:
    """The near-duplicate measure of two raw items, the one :mod:`~kryten_llm.explore.dedup`
    applies: Jaccard of the trigrams of their canonical forms
    (:func:`~kryten_llm.explore.canon.comparable`), 0.0 when their identifiers differ."""
    left, right = comparable(a), comparable(b)
    if left.key != right.key:
        return 0.0
    return jaccard(shingles(left.text), shingles(right.text))


def parse_items(answer: str) -> list[str]:
    """Cut a model's answer into candidate items, one per non-blank line.

    Reasoning blocks (``<think>…</think>``) and code fences are dropped; list markers
    (``-``, ``*``, ``•``, ``1.``, ``2)``, ``[3]``…), surrounding quotes and markdown emphasis
    are stripped. Lines that end with a colon are kept as they are: they are counted as
    rejected by the explorer (:func:`is_header`), so that every line of an answer is accounted
    for.

    Args:
        answer: the completion text.

    Returns:
        The stripped lines, in order; never blank strings.
    """
    answer = _THINK.sub("", answer)
    items = []
    for line in answer.splitlines():
        line = line.strip()
        if not line or line.startswith("```"):
            continue
        line = _BULLET.sub("", line).strip()
        match = _EMPHASIS.match(line)
        if match:
            line = match.group(2).strip()
        if len(line) >= 2 and line[0] in _QUOTES and line[-1] in _QUOTES:
            line = line[1:-1].strip()
        if line:
            items.append(line)
    return items


def is_header(line: str) -> bool:
    """Whether a parsed line is an introduction rather than an item ("Here are ten more:")."""
    return line.endswith(":")
