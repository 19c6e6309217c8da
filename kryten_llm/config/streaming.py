"""How a reply is streamed to the channel: early first parts and humanised pacing.

A provider that can stream (``openai``, ``anthropic``, ``local``; each with ``stream: true``,
the default) hands its answer over while it is written; the responder sends the first part as
soon as its first sentence is finished and passes every check. ``streaming.enabled`` switches
that off for the whole bot (answers are then sent when complete, as before). ``typing`` spaces
parts like a person typing them, for replies streamed or not; it is off by default.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from kryten_llm.config.base import Section


class TypingConfig(Section):
    """A delay before each part, proportional to its length, within limits."""

    enabled: bool = Field(False, description="Pace parts like a person typing them.")
    chars_per_second: float = Field(
        20.0, gt=0, le=1000, description="Typing speed: a part of N characters takes N / this."
    )
    min_seconds: float = Field(0.5, ge=0, le=60, description="The shortest typing time.")
    max_seconds: float = Field(4.0, ge=0, le=60, description="The longest typing time.")

    @model_validator(mode="after")
    def _ordered(self) -> TypingConfig:
        if self.min_seconds > self.max_seconds:
            raise ValueError(
                f"min_seconds {self.min_seconds:g} is above max_seconds {self.max_seconds:g}: "
                "lower min_seconds or raise max_seconds"
            )
        return self

    def seconds_for(self, text: str) -> float:
        """How long typing ``text`` takes (0 when pacing is off)."""
        if not self.enabled:
            return 0.0
        return min(max(len(text) / self.chars_per_second, self.min_seconds), self.max_seconds)


class StreamingConfig(Section):
    """Streamed replies: the first part goes out when its first sentence is finished."""

    enabled: bool = Field(
        True,
        description="Stream answers from providers that can (each provider's `stream` too); "
        "false: every answer is sent when complete.",
    )
    typing: TypingConfig = Field(default_factory=TypingConfig)
