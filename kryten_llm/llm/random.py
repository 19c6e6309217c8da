"""The random provider: an offline, seeded list-making model for demos and tests.

``"type": "random"`` (or ``--provider random``) answers without a network or a key. Each
answer is a list of topic-flavoured items: two or three words of the explorer's word list
(``kryten_llm/explore/wordlist.txt``) around a word of the topic, sometimes with a number, in
one of a few templates ("Velvet Lighthouse Films", "films of the amber orchard No. 12"). A
controllable share of the lines repeats an earlier line, so that duplicate checking has work
to do whose answer is known in advance:

- ``duplicate_share``: the line is an earlier one again, as is or in another case or with
  punctuation (the same item once normalised: an exact duplicate);
- ``near_duplicate_share``: the line is an earlier one as a plural or with an article added
  ("the velvet lighthouse films"): the same item in other words, a near duplicate.

The topic is the ``Topic:`` line of the explorer's prompt, else the last user message; the
number of lines is the ``List N`` the prompt asks for, else one line (so the live bot gets a
one-line reply). Draws come from one generator seeded by ``seed`` (default: from the
provider's name), so the same requests in the same order give the same answers. ``scripted``
stays the provider for canned replies and echoes.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
import zlib
from typing import TYPE_CHECKING, ClassVar

from kryten_llm.llm.base import Completion, CompletionRequest, register
from kryten_llm.llm.scripted import last_user_turn, load_wordlist, offline_completion

if TYPE_CHECKING:
    import aiohttp

    from kryten_llm.config import ProviderConfig

RANDOM_MODEL = "random"
MAX_ITEMS = 500  # the explorer's largest batch
_TOPIC = re.compile(r"^\s*Topic:\s*(.+?)\s*$", re.MULTILINE)
_COUNT = re.compile(r"\bList (\d{1,4})\b")
_STOPWORDS = frozenset(
    {"and", "the", "for", "from", "with", "about", "not", "are", "things", "some", "more"}
)
_TEMPLATES = (
    "{A} {B} {T}",
    "{a} {b} {t}",
    "{T} of the {a} {b}",
    "{A} {T} No. {n}",
    "the {a} {t} of {b} {c}",
    "{A} {B} {C}",
)


class _Writer:
    """Draws items and their duplicates from one seeded generator (see the module docstring)."""

    def __init__(self, seed: int, duplicate: float, near: float) -> None:
        self._rng = random.Random(seed)
        self._words = load_wordlist()
        self._duplicate = duplicate
        self._near = near
        self._said: list[str] = []
        self._unvaried: list[str] = []  # fresh lines without a near variant yet

    def lines(self, topic: str, count: int) -> list[str]:
        topic_words = [
            w for w in re.findall(r"[^\W\d_]{3,}", topic.lower()) if w not in _STOPWORDS
        ] or ["topic"]
        return [self._line(topic_words) for _ in range(count)]

    def _line(self, topic_words: list[str]) -> str:
        rng = self._rng
        roll = rng.random()
        if self._said and roll < self._duplicate:
            return self._exact_variant(rng.choice(self._said))
        if self._unvaried and roll < self._duplicate + self._near:
            # Each line gets one near variant at most: a second would be an exact duplicate.
            unvaried = self._unvaried
            index = rng.randrange(len(unvaried))
            unvaried[index], unvaried[-1] = unvaried[-1], unvaried[index]
            return self._near_variant(unvaried.pop())
        a, b, c = rng.sample(self._words, 3)
        t = rng.choice(topic_words)
        words = {"a": a, "b": b, "c": c, "t": t, "n": str(rng.randrange(1, 1000))}
        words |= {k.upper(): v.title() for k, v in words.items()}
        line = rng.choice(_TEMPLATES).format_map(words)
        self._said.append(line)
        self._unvaried.append(line)
        return line

    def _exact_variant(self, line: str) -> str:
        kind = self._rng.randrange(4)
        if kind == 1:
            return line.upper()
        if kind == 2:
            return line.lower() + "!"
        if kind == 3:
            return f'"{line}."'
        return line

    def _near_variant(self, line: str) -> str:
        # A plural of a numbered item would change its number ("No. 12s"): an article instead.
        plural = line[-1].isalpha() and (
            line.lower().startswith("the ") or self._rng.random() < 0.5
        )
        if plural:
            return line + "es" if line.endswith("s") else line + "s"
        return "the " + line


@register("random")
class RandomProvider:
    """Seeded random list items with a known share of exact and near duplicates."""

    type_name: ClassVar[str] = "random"

    def __init__(self, name: str, config: ProviderConfig, session: aiohttp.ClientSession) -> None:
        self.name = name
        self.model = config.model
        self._delay = config.latency_ms / 1000.0
        seed = config.seed if config.seed is not None else zlib.crc32(name.encode())
        self._writer = _Writer(seed, config.duplicate_share, config.near_duplicate_share)

    async def probe(self, timeout_seconds: float) -> str:
        """Always ready: nothing to reach."""
        return "random items"

    async def complete(self, request: CompletionRequest) -> Completion:
        """Answer the request's ``List N`` with N lines on its topic, after the latency."""
        started = time.monotonic()
        if self._delay:
            await asyncio.sleep(self._delay)
        last = last_user_turn(request)
        topic_match = _TOPIC.search(last)
        topic = topic_match.group(1) if topic_match else last[:200]
        count_match = _COUNT.search(last)
        count = min(int(count_match.group(1)), MAX_ITEMS) if count_match else 1
        text = "\n".join(self._writer.lines(topic, max(count, 1)))
        return offline_completion(self.name, self.model, request, text, started)
