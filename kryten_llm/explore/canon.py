"""The form in which two explored items are compared for near duplicates, and their identifiers.

Exact duplicates are items equal once normalised (:func:`kryten_llm.pools.normalize`: case,
punctuation, spaces). Near duplicates are judged on a further canonical form, built here, so
that the trigram measure of :mod:`kryten_llm.explore.dedup` sees what a reader sees:

- the same item in other words is the same: articles are dropped ("the fiddle fern"), plurals
  made singular ("fiddle ferns", "ferries", "boxes"), hyphenated words joined ("Spider-Man" and
  "Spiderman"), initials run together ("U.S. Open" and "US Open");
- an item's *identifiers* tell items apart, however similar the rest: numbers ("Tip 12" and
  "Tip 13", "Route 66" and "Route 67", "1970s"), number words and ordinals ("Part One" is
  "Part 1"; "first" is "1st"), roman numerals of two letters or more ("Rocky II" and "Rocky
  III", "Super Bowl XLI"; a few words such as "mix" and units such as "cm" excepted) and lone
  letters ("Vitamin C" and "Vitamin D"). Two items are near duplicates only when their
  identifiers are the same, as a multiset; identifiers also stay in the text, in one spelling.

The rules are deliberately few and predictable (no dictionary, no stemmer): each costs a few
microseconds per item, and the labelled pairs in ``tests/data/dedup_pairs.tsv`` measure them.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from kryten_llm.pools import normalize

_HYPHEN = re.compile(r"(?<=[^\W\d_])[-\u2010\u2011](?=[^\W\d_])")
_ORDINAL = re.compile(r"^(\d+)(?:st|nd|rd|th)$")
_ARTICLES = frozenset({"the", "a", "an"})
_UNITS = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty",
]  # fmt: skip
_ORDINALS = [
    "zeroth", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth",
    "ninth", "tenth", "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth",
    "sixteenth", "seventeenth", "eighteenth", "nineteenth", "twentieth",
]  # fmt: skip
_TENS = {"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80}
_NUMBER_WORDS = {
    **{word: str(n) for n, word in enumerate(_UNITS)},
    **{word: str(n) for n, word in enumerate(_ORDINALS)},
    **{word: str(n) for word, n in _TENS.items()},
    "ninety": "90",
    "hundred": "100",
    "thousand": "1000",
    "million": "1000000",
}
_ROMAN = re.compile(r"^m{0,3}(cm|cd|d?c{0,3})(xc|xl|l?x{0,3})(ix|iv|v?i{0,3})$")
_ROMAN_VALUES = {"m": 1000, "d": 500, "c": 100, "l": 50, "x": 10, "v": 5, "i": 1}
# Words and units that happen to be valid roman numerals.
_NOT_ROMAN = frozenset({"mix", "di", "li", "mi", "dim", "cd", "dc", "cc", "cm", "mm", "ml", "xl"})
_IRREGULAR = {
    "men": "man",
    "women": "woman",
    "children": "child",
    "people": "person",
    "mice": "mouse",
    "geese": "goose",
    "feet": "foot",
    "teeth": "tooth",
    "cacti": "cactus",
    "fungi": "fungus",
}
_KEEP_S = ("ss", "us", "is")
_SIBILANT_E = ("xe", "che", "she", "sse", "zze")


@dataclass(frozen=True, slots=True)
class Comparable:
    """An item in canonical form (``text``) and its identifiers (``key``, sorted)."""

    text: str
    key: tuple[str, ...]


def singular(word: str) -> str:
    """A canonical singular of one lower-case word; singular and plural map to the same form.

    Not a dictionary lookup: "movies" and "movie" both become "movy", "boxes" and "box" "box",
    "ferries" and "ferry" "ferry". Words of three letters or less are left alone.
    """
    irregular = _IRREGULAR.get(word)
    if irregular is not None:
        return irregular
    if len(word) <= 3:
        return word
    if word.endswith("s") and not word.endswith(_KEEP_S):
        word = word[:-1]
    if len(word) > 3 and word.endswith("ie"):
        return word[:-2] + "y"
    if word.endswith(_SIBILANT_E):
        return word[:-1]
    return word


def _identifier(token: str) -> str | None:
    """The canonical spelling of a number-like token, or None for an ordinary word."""
    if token.isdigit():
        return str(int(token))
    ordinal = _ORDINAL.match(token)
    if ordinal:
        return str(int(ordinal.group(1)))
    if any(c.isdigit() for c in token):
        return token  # "1970s", "r2d2", "mp3"
    if len(token) >= 2 and token not in _NOT_ROMAN and _ROMAN.match(token):
        return str(_roman_value(token))
    return _NUMBER_WORDS.get(token)


def _roman_value(numeral: str) -> int:
    """The value of a valid roman numeral (lower case)."""
    values = [_ROMAN_VALUES[c] for c in numeral]
    return sum(-v if v < after else v for v, after in zip(values, [*values[1:], 0], strict=True))


def comparable(text: str) -> Comparable:
    """The canonical form and identifiers of a raw item (see the module docstring).

    Args:
        text: an item as written.

    Returns:
        Canonical words and identifiers; the text is the normalised item when nothing else
        would be left (an item that is only "The").
    """
    folded = _HYPHEN.sub("", unicodedata.normalize("NFKC", text).casefold()).replace("&", " and ")
    words = normalize(folded).split()
    last = len(words) - 1
    # "the" anywhere, "a"/"an" before another word ("Plan A" keeps its letter).
    words = [w for i, w in enumerate(words) if w not in _ARTICLES or (w != "the" and i == last)]
    tokens: list[str] = []
    key: list[str] = []
    run: list[str] = []  # single letters in a row: initials ("u s a" -> "usa")
    for word in [*words, ""]:
        if len(word) == 1 and word.isalpha():
            run.append(word)
            continue
        if run:
            joined = "".join(run)
            tokens.append(joined)
            if len(run) == 1:
                key.append(joined)  # a lone letter: "vitamin c"
            run = []
        if not word:
            break
        ident = _identifier(word)
        if ident is not None:
            tokens.append(ident)
            key.append(ident)
        else:
            tokens.append(singular(word))
    canonical = " ".join(tokens) or normalize(text)
    return Comparable(canonical, tuple(sorted(key)))
