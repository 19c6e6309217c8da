"""A compact summary of what the explorer already knows, to steer producers elsewhere.

Sending every known item with each request does not scale (100,000 items are megabytes), so
the prompt carries a digest bounded in characters: how many items are known, the most frequent
and the most recent keywords, and a sample of items (the latest ones plus a random handful of
older ones). The model is asked for items that are *not* like these; whatever it repeats anyway
is caught by :mod:`kryten_llm.explore.dedup`.
"""

from __future__ import annotations

import random
from collections import Counter, deque

from kryten_llm.pools import normalize

_STOPWORD_TEXT = (
    "a an and are as at be by for from in into is it its of on or that the this to with "
    "was were what when where which who why how not no new"
)
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
DEFAULT_MAX_CHARS = 2000
DEFAULT_SAMPLE = 30


class Digest:
    """Known items and their keywords, rendered on demand for the next prompt.

    Args:
        max_chars: upper bound of :meth:`render`'s output.
        sample: most items quoted in the digest.
        rng: picks the older items quoted (inject a seeded one for reproducible prompts).
    """

    def __init__(
        self,
        *,
        max_chars: int = DEFAULT_MAX_CHARS,
        sample: int = DEFAULT_SAMPLE,
        rng: random.Random | None = None,
    ) -> None:
        self.max_chars = max_chars
        self.sample = sample
        self._rng = rng or random.Random()
        self._items: list[str] = []
        self._keywords: Counter[str] = Counter()
        self._recent_keywords: deque[str] = deque(maxlen=200)

    def __len__(self) -> int:
        return len(self._items)

    def observe(self, item: str) -> None:
        """Take a new unique item into account."""
        self._items.append(item)
        for word in normalize(item).split():
            if len(word) > 2 and word not in _STOPWORDS and not word.isdigit():
                self._keywords[word] += 1
                self._recent_keywords.append(word)

    def render(self) -> str:
        """The digest text, at most ``max_chars`` characters; empty when nothing is known."""
        if not self._items:
            return ""
        count = len(self._items)
        frequent = [word for word, _ in self._keywords.most_common(15)]
        recent = list(dict.fromkeys(reversed(self._recent_keywords)))[:15]
        latest = self._items[-(self.sample * 2 // 3) :]
        older = self._items[: count - len(latest)]
        picked = self._rng.sample(older, min(len(older), self.sample - len(latest)))
        lines = [f"Already known: {count} items."]
        if frequent:
            lines.append("Most frequent words so far: " + ", ".join(frequent) + ".")
        if recent:
            lines.append("Most recent words: " + ", ".join(recent) + ".")
        lines.append("Some known items (do not repeat these or variants of them):")
        text = "\n".join(lines)
        for item in [*reversed(latest), *picked]:
            line = "\n- " + item
            if len(text) + len(line) > self.max_chars:
                break
            text += line
        return text[: self.max_chars]
