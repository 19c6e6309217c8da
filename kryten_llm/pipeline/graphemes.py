"""Unicode knowledge the formatter needs: format characters, marks, and grapheme clusters.

The formatter (:mod:`kryten_llm.pipeline.formatter`) must never cut a chat message inside a
user-perceived character (an accented letter, an emoji ZWJ sequence, a flag), must drop
invisible format characters that would hide a leading slash, and must tame "Zalgo" stacks of
combining marks and emoji floods. What a character *is* lives here, apart from the policy of
what a reply may contain, which stays in the formatter.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator


def _code_points(categories: tuple[str, ...]) -> list[int]:
    """Code points of the given categories. Format characters and marks live only in planes
    0, 1 and 14; scanning those keeps import fast (a test checks the whole range)."""
    planes = (range(0x20000), range(0xE0000, 0xE1000))
    return [c for plane in planes for c in plane if unicodedata.category(chr(c)) in categories]


def _char_class(points: list[int]) -> str:
    """A regex character class of ``points``, with runs written as ranges."""
    out, i = [], 0
    points = sorted(set(points))
    while i < len(points):
        j = i
        while j + 1 < len(points) and points[j + 1] == points[j] + 1:
            j += 1
        first, last = re.escape(chr(points[i])), re.escape(chr(points[j]))
        out.append(first if i == j else f"{first}-{last}")
        i = j + 1
    return "[" + "".join(out) + "]"


# Invisible format characters (category Cf): zero-width space/joiner, word joiner, BOM, marks.
CF_POINTS = _code_points(("Cf",))
CF = "".join(map(chr, CF_POINTS))
CF_CLASS = _char_class(CF_POINTS)
# Anything that can make a grapheme cluster longer than one code point.
EXTENDING = re.compile(
    _char_class(
        [
            *_code_points(("Mn", "Me", "Mc")),
            0x200D,
            *range(0x1F3FB, 0x1F400),
            *range(0xE0020, 0xE0080),
            *range(0x1F1E6, 0x1F200),
        ]
    )
)
# No grapheme cluster is longer than this: "Zalgo" stacks of combining marks are trimmed, so a
# cluster always fits in a part (max_message_length >= 20, continuation marker <= 8).
MAX_CLUSTER = 12


def graphemes(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each grapheme cluster: a base with its marks, joiners and modifiers.

    A close approximation of Unicode's extended grapheme clusters, enough never to separate
    combining marks, emoji ZWJ sequences, variation selectors, skin tones, tags or flag pairs.
    """
    i, n = 0, len(text)
    while i < n:
        j = i + 1
        if _is_regional(text[i]) and j < n and _is_regional(text[j]):
            j += 1
        while j < n:
            c = text[j]
            if _extends(c) or (text[j - 1] == "\u200d" and _is_emoji(c)):
                j += 1
            else:
                break
        yield i, j
        i = j


def _is_regional(c: str) -> bool:
    return "\U0001f1e6" <= c <= "\U0001f1ff"


def _extends(c: str) -> bool:
    return (
        c == "\u200d"
        or "\ufe00" <= c <= "\ufe0f"
        or "\U0001f3fb" <= c <= "\U0001f3ff"
        or "\U000e0020" <= c <= "\U000e007f"
        or unicodedata.category(c) in ("Mn", "Me", "Mc")
    )


def _is_emoji(cluster: str) -> bool:
    first = cluster[0]
    return (
        "\U0001f000" <= first <= "\U0001faff"
        or "\u2600" <= first <= "\u27bf"
        or "\ufe0f" in cluster
    )


def trim_clusters(text: str) -> str:
    """Cap clusters at MAX_CLUSTER code points and drop orphan marks (at the start or on a
    space), which would otherwise begin a chat message."""
    out = []
    for start, end in graphemes(text):
        first = text[start]
        if start == 0 and _extends(first):
            continue
        if first.isspace():
            out.append(first)
        else:
            out.append(text[start : min(end, start + MAX_CLUSTER)])
    return "".join(out)


def cap_emoji(text: str, limit: int) -> str:
    """``text`` without the emoji after the first ``limit`` ones."""
    out, seen = [], 0
    for start, end in graphemes(text):
        cluster = text[start:end]
        if _is_emoji(cluster):
            seen += 1
            if seen > limit:
                continue
        out.append(cluster)
    return "".join(out)
