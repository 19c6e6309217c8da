"""What makes two lines "the same line": the comparable form shared by pools and explore.

A fallback pool never holds two lines that differ only in case, punctuation or spacing, and the
explorer's duplicate check (:mod:`kryten_llm.explore.dedup`) compares items in the same form, so
a line explore found new is new to the pool too. :func:`slug` turns a name or a topic into a
file-name-safe word list (pool names, default output folders).

This sits low in the layering: the live bot (through :mod:`kryten_llm.pipeline.fallback`) and
the explorer both use it, so it imports nothing of either.
"""

from __future__ import annotations

import re
import unicodedata

# Apostrophes vanish ("don't" -> "dont") instead of splitting a word in two.
_APOSTROPHES = re.compile(r"['\u2018\u2019\u02bc\u0060\u00b4]")
# Everything that is not a letter, digit or whitespace (punctuation, symbols, underscore).
_PUNCTUATION = re.compile(r"[^\w\s]|_")
_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    """The comparable form of a line: NFKC, casefolded, punctuation and whitespace collapsed.

    Args:
        text: one line or item as written.

    Returns:
        Lower-case words separated by single spaces; empty when nothing but punctuation is left.
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _APOSTROPHES.sub("", text)
    text = _PUNCTUATION.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def slug(text: str, limit: int = 60) -> str:
    """A file-name-safe form of ``text``: normalised words joined by dashes, at most ``limit``.

    Returns:
        The slug, or ``"topic"`` when nothing usable is left.
    """
    words = normalize(text).split()
    out = "-".join(words)[:limit].strip("-")
    out = "".join(c for c in out if c.isascii() and (c.isalnum() or c == "-"))
    return out or "topic"
