"""Who the bot is and when it speaks: personality, prompts, triggers, guards and reply shape."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from kryten_llm.config.base import Section, checked_patterns
from kryten_llm.config.templates import check_template
from kryten_llm.errors import TemplateError


class PersonalityConfig(Section):
    """Who the bot is: turned into the system prompt."""

    character_name: str = Field("CynthiaRothbot", min_length=1)
    name_variations: list[str] = Field(
        default_factory=lambda: ["cynthia", "rothbot"],
        description="Other names that count as a mention (matched on word boundaries).",
    )
    description: str = Field(
        "a sardonic regular of this CyTube channel who loves cult films and B-movies"
    )
    traits: list[str] = Field(default_factory=lambda: ["witty", "knowledgeable", "brief"])
    response_style: str = Field(
        "Answer in one to three short sentences of plain text, like a person in a chat room."
    )
    system_prompt: str | None = Field(
        None,
        description="Replaces the generated identity and style paragraph (the safety rules "
        "are always appended).",
    )


class PromptsConfig(Section):
    """What the model is asked: per-trigger templates and the context budget."""

    templates: dict[str, str] = Field(
        default_factory=dict,
        description='The final user turn, by trigger: a trigger word\'s name, "mention", '
        '"pm", "word" (any trigger word) or "default". Variables are listed in the README.',
    )
    budget: int = Field(
        1500,
        ge=200,
        le=1_000_000,
        description="Most context per request, in budget_unit: system prompt and triggering "
        "message always, then the video, then as much recent chat as fits.",
    )
    budget_unit: Literal["tokens", "chars"] = Field(
        "tokens", description="tokens are approximated as characters / 4."
    )

    @field_validator("templates")
    @classmethod
    def _templates_render(cls, templates: dict[str, str]) -> dict[str, str]:
        for key, template in templates.items():
            try:
                check_template(template)
            except TemplateError as exc:
                raise ValueError(f"template {key!r}: {exc}") from None
        return templates


class TriggerWordConfig(Section):
    """A word or pattern that may make the bot speak without being mentioned."""

    name: str = Field(min_length=1, description="Used in logs, caps and the response log.")
    enabled: bool = Field(True, description="A disabled word never fires (kept for later).")
    patterns: list[str] = Field(min_length=1)
    regex: bool = Field(False, description="Patterns are regexes (else whole words).")
    probability: float = Field(1.0, ge=0, le=1)
    priority: int = Field(0, description="Higher wins when several match.")
    cooldown_seconds: float = Field(0.0, ge=0)
    max_per_hour: int | None = Field(None, ge=0)
    context: str = Field("", description="Extra instruction added to the prompt.")
    providers: list[str] = Field(
        default_factory=list,
        description="Providers to ask for this trigger, in order (empty: the global chain).",
    )

    @model_validator(mode="after")
    def _regexes_compile(self) -> TriggerWordConfig:
        if self.regex:
            checked_patterns(self.patterns)
        return self


class TriggersConfig(Section):
    """When the bot answers."""

    mentions: bool = Field(True, description="Answer when named (character name, variations).")
    mention_priority: int = Field(100, description="Priority of a mention against trigger words.")
    private_messages: bool = Field(True, description="Answer PMs sent to the bot, by PM.")
    words: list[TriggerWordConfig] = Field(default_factory=list)


class FiltersConfig(Section):
    """Messages the bot never reacts to."""

    ignored_users: list[str] = Field(default_factory=list, description="Case-insensitive.")
    command_prefixes: list[str] = Field(
        default_factory=lambda: ["!", "/", "$"],
        description="A message starting with one of these followed by a letter is a command.",
    )
    replay_grace_seconds: float = Field(
        2.0, ge=0, le=3600, description="Messages older than startup minus this are replays."
    )
    other_bots: list[str] = Field(
        default_factory=list, description="Other bots in the channel: never answered."
    )
    bot_name_patterns: list[str] = Field(
        default_factory=list,
        description='Regexes for names of bots (e.g. "(?i)bot$"): never answered.',
    )

    _patterns_compile = field_validator("bot_name_patterns")(checked_patterns)


class SpamConfig(Section):
    """Penalties for users who flood the bot. Counts every message aimed at the bot."""

    enabled: bool = True
    window_seconds: float = Field(30.0, gt=0, description="Window for max_messages.")
    max_messages: int = Field(4, ge=1, description="Messages aimed at the bot per window.")
    identical_window_seconds: float = Field(300.0, gt=0)
    max_identical: int = Field(2, ge=1, description="Same text this often in the window: spam.")
    max_mentioned_users: int = Field(
        4, ge=1, description="A message naming more users than this is a mention flood."
    )
    base_penalty_seconds: float = Field(60.0, gt=0, description="First penalty.")
    max_penalty_seconds: float = Field(3600.0, gt=0, description="Penalties double up to this.")
    forgive_after_seconds: float = Field(
        1800.0, gt=0, description="A clean spell this long resets the doubling."
    )
    exempt_min_rank: float = Field(2.0, description="Users of this rank or higher are exempt.")


class ValidationConfig(Section):
    """Checks on a reply before it is sent; a failed check gets one corrective retry."""

    min_length: int = Field(2, ge=1, description="Characters, after formatting.")
    max_length: int = Field(1000, ge=10, description="Characters, after formatting.")
    repetition_history: int = Field(10, ge=0, description="Past replies compared against.")
    similarity_threshold: float = Field(
        0.8, gt=0, le=1, description="0..1; a reply this similar to a past one is a repeat."
    )
    blocklist: list[str] = Field(
        default_factory=list, description="Regexes (case-insensitive) a reply must not match."
    )
    prompt_leak_words: int = Field(
        8,
        ge=3,
        description="A reply sharing a run of this many words with the system prompt is a leak.",
    )
    retry: bool = Field(True, description="Ask the model once more, with a nudge, on failure.")
    retry_nudge: str = Field(
        "Your previous answer could not be used ({reason}). Answer again: in character, "
        "short, plain text, and different from your earlier replies.",
        description="The corrective message; {reason} is replaced by why.",
    )

    _blocklist_compiles = field_validator("blocklist")(checked_patterns)


class RankMultiplierConfig(Section):
    """Looser limits for trusted ranks."""

    min_rank: float = Field(ge=-1, le=255)
    limit_multiplier: float = Field(1.0, gt=0, description="Counts are multiplied by this.")
    cooldown_multiplier: float = Field(1.0, ge=0, description="Cooldowns are multiplied by this.")


class RateLimitConfig(Section):
    """How often the bot may speak. Zero disables a cooldown; counts must be positive."""

    global_per_minute: int = Field(6, ge=1)
    global_per_hour: int = Field(60, ge=1)
    global_cooldown_seconds: float = Field(5.0, ge=0)
    user_per_hour: int = Field(10, ge=1)
    user_cooldown_seconds: float = Field(30.0, ge=0)
    mention_cooldown_seconds: float = Field(
        60.0, ge=0, description="Per user, between two answered mentions."
    )
    unsolicited_per_window: int = Field(
        3, ge=0, description="Replies to trigger words (nobody asked) allowed per window."
    )
    unsolicited_window_seconds: float = Field(600.0, gt=0)
    rank_multipliers: list[RankMultiplierConfig] = Field(
        default_factory=lambda: [
            RankMultiplierConfig(min_rank=2, limit_multiplier=2.0, cooldown_multiplier=0.5),
            RankMultiplierConfig(min_rank=3, limit_multiplier=4.0, cooldown_multiplier=0.25),
        ]
    )


class FormattingConfig(Section):
    """How a reply is cut into CyTube chat messages."""

    max_message_length: int = Field(
        240, ge=20, le=1000, description="Characters per chat message (CyTube cuts at 320)."
    )
    max_parts: int = Field(3, ge=1, le=10)
    continuation_marker: str = Field(
        "…", max_length=8, description="Appended to a part that the next part continues."
    )
    max_emojis: int | None = Field(None, ge=0, description="Emoji kept per reply; None: all.")
    strip_boilerplate: bool = Field(
        True, description='Remove "As an AI…", "Sure! Here\'s…" and self-references.'
    )
    max_mentions: int = Field(
        3, ge=0, description="A reply naming more present users than this is a mass mention."
    )
