"""The ``memory`` section: notes about users and channels that survive restarts.

Off unless ``memory.enabled`` is true. Notes live in one SQLite file (``memory.path``); what a
user asks the bot to remember is matched by ``remember_patterns``, "forget me" by the exact
``forget_phrases``. Nothing stored is sent to a provider that is not in ``memory.providers``.
How it works is in :mod:`kryten_llm.memory`.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from kryten_llm.config.base import Section, checked_patterns

FACT_GROUP = "fact"


def _with_fact_group(patterns: list[str]) -> list[str]:
    for pattern in checked_patterns(patterns):
        if FACT_GROUP not in re.compile(pattern).groupindex:
            raise ValueError(
                f"pattern {pattern!r} has no (?P<{FACT_GROUP}>...) group: name the part of the "
                "message to remember"
            )
    return patterns


class ExtractionConfig(Section):
    """An optional provider call that finds facts users state about themselves, unasked."""

    enabled: bool = Field(False, description="Ask `provider` about messages aimed at the bot.")
    provider: str | None = Field(
        None, description="A key of llm.providers; it must also be in memory.providers."
    )
    max_facts: int = Field(3, ge=1, le=10, description="Facts kept from one message at most.")
    timeout_seconds: float = Field(20.0, gt=0, le=300)
    max_pending: int = Field(
        4, ge=1, le=100, description="Messages waiting for extraction; more are skipped."
    )


class MemoryConfig(Section):
    """Per-user and per-channel notes, stored locally in SQLite."""

    enabled: bool = Field(False, description="Store and recall notes (off by default).")
    path: Path = Field(
        Path("memory.db"),
        description="The SQLite file; under systemd keep it in a writable directory (logs/).",
    )
    providers: list[str] = Field(
        default_factory=list,
        description="Providers allowed to see notes. A reply whose provider chain has any other "
        "provider is asked without notes.",
    )
    remember_patterns: list[str] = Field(
        default_factory=lambda: [
            r"(?i)\bremember(?:,)?(?: that)? (?P<fact>(?:i|i'm|i've|i'd|my|me)\b.+)",
        ],
        description="Regexes searched in messages aimed at the bot; the (?P<fact>...) group is "
        "stored as a note about the sender.",
    )
    channel_patterns: list[str] = Field(
        default_factory=lambda: [r"(?i)\bremember for (?:the|this) channel:? (?P<fact>.+)"],
        description="Regexes for notes about the channel, from users of `channel_min_rank`.",
    )
    channel_min_rank: float = Field(2, ge=0, description="Rank needed for channel notes.")
    forget_phrases: list[str] = Field(
        default_factory=lambda: ["forget me", "forget about me", "forget everything about me"],
        min_length=1,
        description="The whole message, without the bot's name and punctuation, compared "
        "ignoring case.",
    )
    forget_reply: str = Field(
        "{user}: done, I have forgotten everything I knew about you.",
        min_length=1,
        max_length=200,
        description="Said after a user's notes are deleted; {user} is their name.",
    )
    max_fact_chars: int = Field(
        200, ge=10, le=1000, description="A longer request is refused, never cut."
    )
    max_notes_per_user: int = Field(20, ge=1, le=1000, description="Oldest go first.")
    max_notes_per_channel: int = Field(20, ge=1, le=1000, description="Oldest go first.")
    max_age_days: float = Field(
        90.0, gt=0, le=36500, description="Older notes are no longer recalled and are deleted."
    )
    recall_per_user: int = Field(5, ge=0, le=50, description="Newest notes of the sender.")
    recall_per_channel: int = Field(3, ge=0, le=50, description="Newest notes of the channel.")
    refresh_seconds: float = Field(
        2.0,
        gt=0,
        le=3600,
        description="How often the bot looks for changes made by another process (the CLI).",
    )
    extraction: ExtractionConfig = Field(default_factory=ExtractionConfig)

    @field_validator("remember_patterns", "channel_patterns")
    @classmethod
    def _patterns(cls, patterns: list[str]) -> list[str]:
        return _with_fact_group(patterns)

    @field_validator("forget_phrases")
    @classmethod
    def _phrases(cls, phrases: list[str]) -> list[str]:
        if any(not phrase.strip() for phrase in phrases):
            raise ValueError("a forget phrase is empty: write the words a user would type")
        return phrases

    @field_validator("forget_reply")
    @classmethod
    def _reply(cls, reply: str) -> str:
        try:
            reply.format(user="x")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"forget_reply may use only {{user}} (write a brace as {{{{ or }}}}): {exc}"
            ) from None
        if reply.lstrip().startswith("/"):
            raise ValueError("forget_reply must not start with '/': CyTube would run it")
        return reply

    @model_validator(mode="after")
    def _extraction_provider(self) -> MemoryConfig:
        extraction = self.extraction
        if extraction.enabled and extraction.provider is None:
            raise ValueError("memory.extraction.enabled needs memory.extraction.provider")
        if extraction.enabled and extraction.provider not in self.providers:
            raise ValueError(
                f"memory.extraction.provider {extraction.provider!r} is not in memory.providers:"
                " a provider that extracts notes sees users' messages about themselves"
            )
        return self
