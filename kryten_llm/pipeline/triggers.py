"""Trigger engine: does this chat line call for an answer, and which trigger fired?

Runs in the NATS callback on every chat message that passed the intake filters, so matching is
one precompiled alternation per kind: mentions of the bot's names, plain trigger words, and
regex trigger words. Names and words match on word boundaries that work for any script and for
names ending in digits or underscores ("todd" fires on "Todd?" and "@todd", never on "toddler").

Among the triggers that match, the highest priority is tried first (a mention is always one of
the candidates and never misses its roll); a trigger word fires when ``rng.random()`` is below
its probability. Cooldowns and hourly caps of trigger words are the rate limiter's business.
"""

from __future__ import annotations

import random
import re
from typing import TYPE_CHECKING

from kryten_llm.pipeline.decisions import TriggerMatch

if TYPE_CHECKING:
    from kryten_llm.config import PersonalityConfig, TriggersConfig, TriggerWordConfig

# Word boundaries by lookaround: \b fails for names like "bot_9" or "r2-d2".
_BEFORE, _AFTER = r"(?<![\w])", r"(?![\w])"


def _alternation(words: list[str]) -> str:
    unique = sorted({w.strip() for w in words if w.strip()}, key=len, reverse=True)
    return "|".join(re.escape(w) for w in unique)


class TriggerEngine:
    """Matches chat text against the bot's names and the configured trigger words."""

    def __init__(
        self,
        triggers: TriggersConfig,
        personality: PersonalityConfig,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._rng = rng or random.Random()
        self._mention: TriggerMatch | None = None
        self._mention_re: re.Pattern[str] | None = None
        names = [personality.character_name, *personality.name_variations]
        if triggers.mentions and any(n.strip() for n in names):
            self._mention_re = re.compile(
                rf"{_BEFORE}@?(?:{_alternation(names)}){_AFTER}", re.IGNORECASE
            )
            self._mention = TriggerMatch("mention", "mention", triggers.mention_priority)
        # Candidates in the order they are tried: priority, then config order, mention first.
        self._words: list[tuple[TriggerWordConfig, TriggerMatch, re.Pattern[str]]] = []
        for config in triggers.words:
            if not config.enabled:
                continue
            if config.regex:
                pattern = "|".join(f"(?:{p})" for p in config.patterns)
            else:
                pattern = rf"{_BEFORE}(?:{_alternation(config.patterns)}){_AFTER}"
            match = TriggerMatch(
                "word", config.name, config.priority, config.context, tuple(config.providers)
            )
            self._words.append((config, match, re.compile(pattern, re.IGNORECASE)))
        self._words.sort(key=lambda item: -item[0].priority)
        # One combined pre-check so that a line matching nothing costs one regex search.
        parts = [p.pattern for _, _, p in self._words]
        if self._mention_re is not None:
            parts.append(self._mention_re.pattern)
        self._any = (
            re.compile("|".join(f"(?:{p})" for p in parts), re.IGNORECASE) if parts else None
        )
        self._literals = _literals(triggers, names if self._mention_re is not None else [])

    def is_mention(self, text: str) -> bool:
        """Whether ``text`` names the bot (by character name or a variation)."""
        return self._mention_re is not None and self._mention_re.search(text) is not None

    def match(self, text: str) -> TriggerMatch | None:
        """The trigger that fires for ``text``, or ``None``.

        Args:
            text: plain chat text (HTML already decoded).
        """
        if self._any is None:
            return None
        if self._literals is not None and text.isascii():
            # No name or word in the line, so no match: a few substring tests instead of the
            # regex's lookarounds at every position (~0.6 us), for the common line.
            lowered = text.lower()
            for word in self._literals:
                if word in lowered:
                    break
            else:
                return None
        if self._any.search(text) is None:
            return None
        mention = self._mention if self.is_mention(text) else None
        for config, trigger, pattern in self._words:
            if mention is not None and mention.priority >= config.priority:
                return mention
            if pattern.search(text) is None:
                continue
            if config.probability >= 1.0 or self._rng.random() < config.probability:
                return trigger
        return mention


def _literals(triggers: TriggersConfig, names: list[str]) -> tuple[str, ...] | None:
    """The texts one of which a line must contain (ignoring case) for any trigger to match.

    Only when every trigger is plain ASCII words: then, for an ASCII line, ``re.IGNORECASE``
    matches exactly what ``str.lower`` makes equal, and a line that contains none of them
    cannot match. ``None`` (always run the regex) when a word is a regex or not ASCII.
    """
    words = [w.strip() for w in names if w.strip()]
    for config in triggers.words:
        if config.enabled:
            patterns = [w.strip() for w in config.patterns if w.strip()]
            if config.regex or not patterns:  # an empty alternation matches between words
                return None
            words.extend(patterns)
    lowered = {w.lower() for w in words}
    if not all(w.isascii() for w in lowered):
        return None
    # A word containing another is implied by it ("cynthia" covers "cynthiarothbot").
    return tuple(sorted(w for w in lowered if not any(o != w and o in w for o in lowered)))
