"""Recognise what a user asks of the bot's memory: "remember ...", "forget me", or nothing.

Runs in the NATS callback on messages aimed at the bot, so it is regexes only (compiled once
per pattern list). What a user asks to remember is untrusted text: it is cleaned of control and
format characters and of the prompt's quote markers, and a request longer than
``memory.max_fact_chars`` is refused whole, never cut (a cut fact can say something else).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from kryten_llm.config.memory import FACT_GROUP
from kryten_llm.memory.store import Scope

if TYPE_CHECKING:
    from kryten_llm.config import MemoryConfig

MARKERS = ("«", "»")
_WORDS = re.compile(r"[^\w']+")


class Refusal(StrEnum):
    """Why a "remember" request was not stored."""

    TOO_LONG = "too_long"
    EMPTY = "empty"
    RANK = "rank"  # a channel note from a user below ``channel_min_rank``


@dataclass(frozen=True, slots=True)
class Remember:
    """Store ``fact`` about the sender (``Scope.USER``) or the channel."""

    fact: str
    scope: Scope


@dataclass(frozen=True, slots=True)
class Forget:
    """Delete everything stored about the sender."""


@dataclass(frozen=True, slots=True)
class Refused:
    """A "remember" request that is not stored, and why."""

    reason: Refusal
    scope: Scope


MemoryRequest = Remember | Forget | Refused


def read_request(
    text: str, config: MemoryConfig, *, names: Sequence[str], rank: float
) -> MemoryRequest | None:
    """What ``text`` (a message aimed at the bot) asks of the memory, if anything.

    Args:
        text: the message as a person reads it.
        config: the ``memory`` section in force now.
        names: the bot's names (removed before a forget phrase is compared).
        rank: the sender's CyTube rank (channel notes need ``channel_min_rank``).
    """
    if _words(text, names) in _phrases(tuple(config.forget_phrases)):
        return Forget()
    for scope, patterns in (
        (Scope.CHANNEL, config.channel_patterns),
        (Scope.USER, config.remember_patterns),
    ):
        for pattern in _compiled(tuple(patterns)):
            found = pattern.search(text)
            if found is None:
                continue
            if scope is Scope.CHANNEL and rank < config.channel_min_rank:
                return Refused(Refusal.RANK, scope)
            fact = _without_names(found.group(FACT_GROUP) or "", names)
            return checked_fact(fact, config, scope)
    return None


def checked_fact(raw: str, config: MemoryConfig, scope: Scope) -> Remember | Refused:
    """``raw`` cleaned as a fact to store, or refused (empty, longer than allowed)."""
    fact = clean_fact(raw)
    if len(fact) < 2:
        return Refused(Refusal.EMPTY, scope)
    if len(fact) > config.max_fact_chars:
        return Refused(Refusal.TOO_LONG, scope)
    return Remember(fact, scope)


def clean_fact(text: str) -> str:
    """One line of plain text: no control or format characters, no quote markers."""
    kept = "".join(
        " " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch
        for ch in unicodedata.normalize("NFC", text)
        if unicodedata.category(ch) != "Cf" and ch not in MARKERS
    )
    return " ".join(kept.split()).strip(" .!,;:")


def _without_names(fact: str, names: Sequence[str]) -> str:
    """``fact`` without the bot's name addressed at its end ("..., cynthia.")."""
    if not names:
        return fact
    alternatives = "|".join(re.escape(name) for name in names)
    return re.sub(rf"[\s,;:-]+@?(?:{alternatives})\W*$", "", fact, flags=re.IGNORECASE)


def _words(text: str, names: Sequence[str]) -> str:
    """``text`` lower-cased as words, without the bot's names and punctuation."""
    drop = {name.lower() for name in names}
    return " ".join(w for w in _WORDS.split(text.lower()) if w and w not in drop)


@functools.lru_cache(maxsize=16)
def _phrases(phrases: tuple[str, ...]) -> frozenset[str]:
    return frozenset(_words(phrase, ()) for phrase in phrases)


@functools.lru_cache(maxsize=16)
def _compiled(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(pattern) for pattern in patterns)
