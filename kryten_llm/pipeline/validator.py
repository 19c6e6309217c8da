"""Check a formatted reply before it is sent: whatever the model said, this decides.

Sits between the formatter and the sender. A reply is refused when it is too short or too long,
repeats one of the bot's recent replies in that channel (word-shingle similarity, so reordered
punctuation or case does not hide a repeat), matches an operator's blocklist pattern, or quotes
a run of words from the system prompt (a prompt-extraction attack that worked). The worker then
asks the model once more with a corrective nudge, and drops the reply if that fails too.

Everything here is set arithmetic over precomputed shingles: well under a millisecond per reply.
"""

from __future__ import annotations

import re
import unicodedata
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kryten_llm.config import ValidationConfig

_WORD = re.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class Verdict:
    """The validator's answer: ``reason`` is a stable label when ``ok`` is false."""

    ok: bool
    reason: str = ""
    detail: str = ""


PASS = Verdict(True)


def _words(text: str) -> list[str]:
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def _shingles(words: list[str], size: int) -> set[tuple[str, ...]]:
    if len(words) < size:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + size]) for i in range(len(words) - size + 1)}


def similarity(a: set[tuple[str, ...]], b: set[tuple[str, ...]]) -> float:
    """Jaccard similarity of two shingle sets (1.0: the same words in the same order)."""
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


# Shingles of the replies sent recently, by channel key. Validators built anew by a reload (or
# one per channel character) share one, so a reply is never repeated across a reload.
RecentReplies = dict[str, deque[set[tuple[str, ...]]]]


class ReplyValidator:
    """Validates replies against config, the system prompt and recent replies per channel."""

    _SHINGLE = 3

    def __init__(
        self,
        config: ValidationConfig,
        system_prompt: str,
        *,
        recent: RecentReplies | None = None,
    ) -> None:
        self._config = config
        self._blocklist = [re.compile(p, re.IGNORECASE) for p in config.blocklist]
        self._leak_size = config.prompt_leak_words
        self._prompt_runs = _shingles(_words(system_prompt), self._leak_size)
        self._recent: RecentReplies = recent if recent is not None else {}

    def check(self, text: str, channel: str, *, repetition: bool = True) -> Verdict:
        """Judge ``text`` (the formatted reply as it would be sent) for ``channel``.

        ``repetition=False`` skips the comparison with recent replies: fallback-pool lines
        repeat by design, once per rotation.
        """
        cfg = self._config
        if len(text) < cfg.min_length:
            return Verdict(False, "too_short", f"{len(text)} < {cfg.min_length} characters")
        if len(text) > cfg.max_length:
            return Verdict(False, "too_long", f"{len(text)} > {cfg.max_length} characters")
        for pattern in self._blocklist:
            if pattern.search(text):
                return Verdict(False, "blocklisted", pattern.pattern)
        words = _words(text)
        if len(words) >= self._leak_size and self._prompt_runs:
            leaked = _shingles(words, self._leak_size) & self._prompt_runs
            if leaked:
                return Verdict(False, "prompt_leak", " ".join(next(iter(leaked))))
        if not repetition:
            return PASS
        shingles = _shingles(words, self._SHINGLE)
        for past in self._recent.get(channel, ()):
            score = similarity(shingles, past)
            if score >= cfg.similarity_threshold:
                return Verdict(False, "repetition", f"similarity {score:.2f}")
        return PASS

    def remember(self, text: str, channel: str) -> None:
        """Record a reply that was sent, for the repetition check."""
        if self._config.repetition_history == 0:
            return
        recent = self._recent.get(channel)
        if recent is None or recent.maxlen != self._config.repetition_history:
            recent = self._recent[channel] = deque(
                recent or (), maxlen=self._config.repetition_history
            )
        recent.append(_shingles(_words(text), self._SHINGLE))

    def nudge(self, verdict: Verdict) -> str:
        """The corrective message for a retry after ``verdict``."""
        return self._config.retry_nudge.replace("{reason}", verdict.reason.replace("_", " "))
