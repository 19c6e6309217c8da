"""Check a formatted reply before it is sent: whatever the model said, this decides.

Sits between the formatter and the sender. A reply is refused when it is too short or too long,
repeats one of the bot's recent replies in that channel (word-shingle similarity, so reordered
punctuation or case does not hide a repeat), matches an operator's blocklist pattern, or quotes
a run of words from the system prompt (a prompt-extraction attack that worked). The worker then
asks the model once more with a corrective nudge, and drops the reply if that fails too.

A streamed reply is checked part by part before each part is sent (:class:`PartChecks`, one
per reply): the checks that can judge part of a reply (length so far, blocklist, prompt leak,
repetition) run over the parts sent so far and the new one together, so that a leak or a repeat
spanning two parts is caught. Repetition there is containment (the share of the text's shingles
found in a recent reply), because the start of a repeated reply is a small part of the old one.

A text is tokenised once: a whole reply when it is checked (and :meth:`ReplyValidator.remember`
reuses those words when it is sent), a streamed reply one part at a time (the words of the parts
already sent are kept, never read again).

Everything here is set arithmetic over precomputed shingles: well under a millisecond per reply.
"""

from __future__ import annotations

import re
import unicodedata
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kryten_llm.config import ValidationConfig

_WORD = re.compile(r"\w+")
_MIN_SHINGLES = 6  # eight words: a sentence, not a phrase
Shingles = set[tuple[str, ...]]  # runs of consecutive words


@dataclass(frozen=True, slots=True)
class Verdict:
    """The validator's answer: ``reason`` is a stable label when ``ok`` is false."""

    ok: bool
    reason: str = ""
    detail: str = ""


PASS = Verdict(True)


def _words(text: str) -> list[str]:
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def _shingles(words: list[str], size: int, since: int = 0) -> Shingles:
    """Runs of ``size`` words that end at word ``since`` or later (all of them by default);
    fewer words than ``size`` make one short run."""
    if len(words) < size:
        return {tuple(words)} if words else set()
    first = max(since - size + 1, 0)
    return {tuple(words[i : i + size]) for i in range(first, len(words) - size + 1)}


def containment(part: Shingles, whole: Shingles) -> float:
    """The share of ``part``'s shingles found in ``whole``; a part of fewer than
    ``_MIN_SHINGLES`` counts as that many (a common short phrase is not a repeat)."""
    if not part or not whole:
        return 0.0
    return len(part & whole) / max(len(part), _MIN_SHINGLES)


def similarity(a: Shingles, b: Shingles) -> float:
    """Jaccard similarity of two shingle sets (1.0: the same words in the same order)."""
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


# Shingles of the replies sent recently, by channel key. Validators built anew by a reload (or
# one per channel character) share one, so a reply is never repeated across a reload.
RecentReplies = dict[str, deque[Shingles]]


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
        self._last: tuple[str, Shingles] = ("", set())  # the text judged last, its shingles

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
        words = _words(text)
        verdict = self._content(text, words)
        if not verdict.ok or not repetition:
            return verdict
        shingles = _shingles(words, self._SHINGLE)
        self._last = (text, shingles)  # the reply checked last is usually the one sent next
        return self._repetition(shingles, channel, similarity)

    def parts(self, channel: str) -> PartChecks:
        """The checks of one streamed reply for ``channel``, part by part."""
        return PartChecks(self, channel)

    def _content(self, text: str, words: list[str], since: int = 0) -> Verdict:
        """The blocklist and the prompt-leak check; runs that end before word ``since`` were
        judged already (the parts sent of a streamed reply)."""
        for pattern in self._blocklist:
            if pattern.search(text):
                return Verdict(False, "blocklisted", pattern.pattern)
        if len(words) >= self._leak_size and self._prompt_runs:
            leaked = _shingles(words, self._leak_size, since) & self._prompt_runs
            if leaked:
                return Verdict(False, "prompt_leak", " ".join(next(iter(leaked))))
        return PASS

    def _repetition(
        self, shingles: Shingles, channel: str, score: Callable[[Shingles, Shingles], float]
    ) -> Verdict:
        for past in self._recent.get(channel, ()):
            value = score(shingles, past)
            if value >= self._config.similarity_threshold:
                return Verdict(False, "repetition", f"similarity {value:.2f}")
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
        said, shingles = self._last
        recent.append(shingles if said == text else _shingles(_words(text), self._SHINGLE))

    def nudge(self, verdict: Verdict) -> str:
        """The corrective message for a retry after ``verdict``."""
        return self._config.retry_nudge.replace("{reason}", verdict.reason.replace("_", " "))


class PartChecks:
    """The checks of one streamed reply, part by part (see the module docstring).

    Each part is tokenised once; the words, runs and text of the parts that passed are kept,
    and only the runs a new part adds are compared with the system prompt.

    Args:
        validator: the channel's validator (its config, prompt and recent replies).
        channel: the channel's key.
    """

    def __init__(self, validator: ReplyValidator, channel: str) -> None:
        self._validator = validator
        self._channel = channel
        self.text = ""  # the parts that passed, joined by spaces as they are remembered
        self._words: list[str] = []
        self._shingles: Shingles = set()

    def admit(self, part: str) -> Verdict:
        """Judge ``part`` after the parts that passed before it; one that passes joins them.

        Length (of everything so far), blocklist, prompt leak and repetition are judged over
        the parts so far and ``part`` together; the minimum length concerns the whole reply.
        """
        validator = self._validator
        limit = validator._config.max_length
        size = len(self.text) + 1 + len(part) if self.text else len(part)
        if size > limit:
            return Verdict(False, "too_long", f"{size} > {limit} characters")
        text = f"{self.text} {part}" if self.text else part
        since = len(self._words)
        words = self._words + _words(part)
        verdict = validator._content(text, words, since)
        if not verdict.ok:
            return verdict
        run = validator._SHINGLE
        if since >= run:  # the runs so far stand: add those the part ends
            shingles = self._shingles | _shingles(words, run, since)
        else:  # a short start was one short run: count them afresh
            shingles = _shingles(words, run)
        verdict = validator._repetition(shingles, self._channel, containment)
        if verdict.ok:
            self.text, self._words, self._shingles = text, words, shingles
            validator._last = (text, shingles)
        return verdict
