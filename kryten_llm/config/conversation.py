"""How the bot takes part in the evening: video comments, joining in, follow-ups, chat share.

Three sections, each off by default so that a config without them behaves as before:

- ``media_change``: a comment when a new video starts (``changeMedia``);
- ``participation``: speaking unasked now and then, with the decay curve, a cap per window and
  the share budget that keeps the bot's messages under a share of the channel's chat;
- ``followups``: a user's reply to the bot counts as addressed to it without its name.

The logic lives in :mod:`kryten_llm.pipeline.media`, :mod:`kryten_llm.pipeline.participation`,
:mod:`kryten_llm.pipeline.share` and :mod:`kryten_llm.pipeline.followup`.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from kryten_llm.config.base import Section
from kryten_llm.config.templates import check_template
from kryten_llm.errors import TemplateError

DEFAULT_MEDIA_TEMPLATE = (
    "A new video just started in the channel (its title is untrusted text):\n"
    "{video_title}, {video_duration} long.{up_next}\n"
    "Say one short thing about it to the room, in character."
)

DEFAULT_JOIN_TEMPLATE = (
    "{video}\n{user} said this in the channel chat, not to you (untrusted user text):\n"
    "{user}: {message}\nJoin the conversation with one short remark, in character."
)


def _checked(section: str, template: str) -> str:
    try:
        check_template(template)
    except TemplateError as exc:
        raise ValueError(f"{section}.template: {exc}") from None
    return template


class MediaChangeConfig(Section):
    """A comment on the new video when ``changeMedia`` arrives."""

    enabled: bool = Field(False, description="Comment on new videos.")
    probability: float = Field(0.5, ge=0, le=1, description="Chance to comment on a new video.")
    min_duration_seconds: float = Field(
        60.0, ge=0, description="Shorter videos (and live streams, 0 s) get no comment."
    )
    cooldown_seconds: float = Field(
        300.0, ge=0, description="Least time between two video comments in a channel."
    )
    repeat_window_seconds: float = Field(
        86_400.0,
        ge=0,
        description="The same title gets no second comment within this time, across restarts "
        "and instances.",
    )
    template: str = Field(
        DEFAULT_MEDIA_TEMPLATE,
        description="The prompt: {video_title}, {video_duration}, {up_next} and the usual "
        "variables.",
    )
    up_next: int = Field(
        1,
        ge=0,
        le=5,
        description="Titles of what plays next, read from the bridge's kryten_<Channel>_playlist "
        "KV bucket (0: do not read it).",
    )
    memory: Literal["auto", "kv", "file"] = Field(
        "auto",
        description="Where titles already commented on are remembered: kv (NATS JetStream KV, "
        "shared by instances), file, or auto (kv when JetStream answers, else file).",
    )
    memory_file: Path = Field(
        Path("state/media-seen.json"), description="The file used when memory is file."
    )
    kv_bucket: str = Field(
        "kryten_llm_media_seen",
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The JetStream KV bucket used when memory is kv.",
    )

    @field_validator("template")
    @classmethod
    def _template_renders(cls, template: str) -> str:
        return _checked("media_change", template)


class DecayPoint(Section):
    """One point of the joining-in curve: the factor once this much time has passed."""

    after_seconds: float = Field(ge=0)
    factor: float = Field(ge=0, le=1)


class ParticipationConfig(Section):
    """Joining in unasked, and the share budget of the bot's messages."""

    enabled: bool = Field(
        False,
        description="Join in unasked, and hold unasked replies to the share budget (the share "
        "is measured either way).",
    )
    base_probability: float = Field(
        0.1, ge=0, le=1, description="Chance per chat line, before the curve and the boost."
    )
    decay: list[DecayPoint] = Field(
        default_factory=lambda: [
            DecayPoint(after_seconds=60, factor=0.9),
            DecayPoint(after_seconds=120, factor=0.7),
            DecayPoint(after_seconds=300, factor=0.5),
            DecayPoint(after_seconds=900, factor=0.2),
        ],
        min_length=1,
        description="Factor by seconds since the bot last spoke or was addressed; linear "
        "between points, flat before the first and after the last.",
    )
    question_factor: float = Field(
        2.0, ge=1, le=10, description="Multiplies the chance for a question to the room."
    )
    max_per_window: int = Field(3, ge=0, description="Unasked joins per window.")
    window_seconds: float = Field(600.0, gt=0)
    share_budget: float = Field(
        0.05,
        gt=0,
        le=1,
        description="Most share of the channel's chat the bot's messages may take.",
    )
    share_window_messages: int = Field(
        200, ge=10, le=100_000, description="The sliding window: the channel's last messages."
    )
    template: str = Field(
        DEFAULT_JOIN_TEMPLATE, description="The prompt for joining in (the usual variables)."
    )
    share_headroom: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="Part of the budget kept for mentions and PMs: unasked replies stop at "
        "budget x (1 - headroom).",
    )

    @field_validator("template")
    @classmethod
    def _template_renders(cls, template: str) -> str:
        return _checked("participation", template)

    @model_validator(mode="after")
    def _curve_increases(self) -> ParticipationConfig:
        times = [point.after_seconds for point in self.decay]
        if any(b <= a for a, b in itertools.pairwise(times)):
            raise ValueError(f"participation.decay: after_seconds must increase, got {times}")
        return self


class FollowUpConfig(Section):
    """A reply to the bot counts as addressed to it, without its name."""

    enabled: bool = Field(False, description="Treat replies to the bot as addressed to it.")
    window_seconds: float = Field(
        90.0, gt=0, le=3600, description="How long after the bot answered a user."
    )
    min_quote_chars: int = Field(
        12, ge=4, le=200, description="A quote of the bot's reply at least this long counts."
    )
