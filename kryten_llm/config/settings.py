"""The whole configuration in one object, read from a JSON file and the environment.

Every problem becomes a :class:`~kryten_llm.errors.ConfigError` naming the path and the fix
(with "did you mean" for a misspelt key)."""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from kryten_llm.config.base import ENV_PREFIX
from kryten_llm.config.batchcfg import BatchConfig
from kryten_llm.config.behaviour import (
    FiltersConfig,
    FormattingConfig,
    PersonalityConfig,
    PromptsConfig,
    RateLimitConfig,
    SpamConfig,
    TriggersConfig,
    ValidationConfig,
)
from kryten_llm.config.cluster import ClusterConfig, ShardingConfig
from kryten_llm.config.conversation import (
    FollowUpConfig,
    MediaChangeConfig,
    ParticipationConfig,
)
from kryten_llm.config.layers import Sources, find_sources
from kryten_llm.config.llm import LLMConfig
from kryten_llm.config.memory import MemoryConfig
from kryten_llm.config.overrides import Override
from kryten_llm.config.runtime import (
    BotConfig,
    ChannelConfig,
    FallbackConfig,
    LoggingConfig,
    NatsConfig,
    ProcessingConfig,
    SendConfig,
    ServiceConfig,
    WebConfig,
)
from kryten_llm.config.streaming import StreamingConfig
from kryten_llm.config.templates import KINDS
from kryten_llm.errors import ConfigError


class Settings(BaseSettings):
    """The whole configuration. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_assignment=True,
        nested_model_default_partial_update=True,
    )

    nats: NatsConfig = Field(default_factory=NatsConfig)
    channels: list[ChannelConfig] = Field(
        default_factory=lambda: [ChannelConfig(domain="cytu.be", channel="MyChannel")],
        min_length=1,
    )
    bot: BotConfig = Field(default_factory=BotConfig)
    personalities: dict[str, PersonalityConfig] = Field(
        default_factory=lambda: {"cynthia": PersonalityConfig()},
        min_length=1,
        description="Named personalities; a legacy single `personality` object is read as "
        '{"default": ...}.',
    )
    active_personality: str = Field("cynthia", description="The key in `personalities` in use.")
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    triggers: TriggersConfig = Field(default_factory=TriggersConfig)
    filters: FiltersConfig = Field(default_factory=FiltersConfig)
    ratelimit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    spam: SpamConfig = Field(default_factory=SpamConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    formatting: FormattingConfig = Field(default_factory=FormattingConfig)
    send: SendConfig = Field(default_factory=SendConfig)
    processing: ProcessingConfig = Field(default_factory=ProcessingConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    service: ServiceConfig = Field(default_factory=ServiceConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    fallback: FallbackConfig = Field(default_factory=FallbackConfig)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    streaming: StreamingConfig = Field(default_factory=StreamingConfig)
    media_change: MediaChangeConfig = Field(default_factory=MediaChangeConfig)  # conv14
    participation: ParticipationConfig = Field(default_factory=ParticipationConfig)  # conv14
    followups: FollowUpConfig = Field(default_factory=FollowUpConfig)  # conv14
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)  # issue 15: several instances
    sharding: ShardingConfig = Field(default_factory=ShardingConfig)
    batch: BatchConfig = Field(default_factory=BatchConfig)  # issue 16: batch defaults
    dry_run: bool = Field(False, description="Decide and log everything, send nothing.")

    @model_validator(mode="before")
    @classmethod
    def _single_personality(cls, data: Any) -> Any:
        """Accept the one-personality form ``"personality": {...}`` of earlier configs."""
        if isinstance(data, dict) and "personality" in data:
            if "personalities" in data:
                raise ValueError(
                    "personality and personalities are both set: move `personality` into "
                    "`personalities` under a name"
                )
            data = dict(data)
            data["personalities"] = {"default": data.pop("personality")}
            data.setdefault("active_personality", "default")
        return data

    @property
    def personality(self) -> PersonalityConfig:
        """The active personality."""
        return self.personalities[self.active_personality]

    @model_validator(mode="after")
    def _active_personality_exists(self) -> Settings:
        if self.active_personality not in self.personalities:
            raise ValueError(
                f"active_personality {self.active_personality!r} is not in personalities "
                f"({', '.join(sorted(self.personalities))})"
            )
        return self

    def for_channel(self, channel: ChannelConfig) -> Settings:
        """The settings in force in ``channel``: its personality, triggers, limits and shape."""
        update: dict[str, Any] = {}
        if channel.personality is not None:
            update["active_personality"] = channel.personality
        for section in ("triggers", "ratelimit", "formatting"):
            own = getattr(channel, section)
            if own is not None:
                update[section] = own
        return self.model_copy(update=update) if update else self

    def trigger_sets(self) -> list[tuple[str, TriggersConfig]]:
        """Every trigger set with where it is configured (top level, then each channel's own)."""
        found = [("triggers", self.triggers)]
        found += [
            (f"channels.{i}.triggers", c.triggers)
            for i, c in enumerate(self.channels)
            if c.triggers is not None
        ]
        return found

    @model_validator(mode="after")
    def _channel_personalities_exist(self) -> Settings:
        for i, channel in enumerate(self.channels):
            if channel.personality is not None and channel.personality not in self.personalities:
                raise ValueError(
                    f"channels.{i}.personality {channel.personality!r} is not in personalities "
                    f"({', '.join(sorted(self.personalities))})"
                )
        keys = [c.key for c in self.channels]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise ValueError(f"channels {twice} are configured twice: keep one entry each")
        return self

    @model_validator(mode="after")
    def _templates_have_triggers(self) -> Settings:
        words = {word.name for _, triggers in self.trigger_sets() for word in triggers.words}
        unknown = sorted(set(self.prompts.templates) - words - set(KINDS))
        if unknown:
            raise ValueError(
                f"prompts.templates {unknown} match no trigger: use a trigger word's name "
                f"({', '.join(sorted(words)) or 'none configured'}) or one of {', '.join(KINDS)}"
            )
        return self

    @model_validator(mode="after")
    def _trigger_providers_exist(self) -> Settings:
        known = set(self.llm.providers)
        for where, triggers in self.trigger_sets():
            for word in triggers.words:
                unknown = [name for name in word.providers if name not in known]
                if unknown:
                    raise ValueError(
                        f"{where}.words {word.name!r}: providers {unknown} are not in "
                        f"llm.providers ({', '.join(sorted(known))})"
                    )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        layers = _layers.get()
        if layers is None:
            return (init_settings, env_settings)
        files, runtime = layers
        return (
            init_settings,
            _Given(settings_cls, runtime),
            env_settings,
            _Given(settings_cls, files),
        )


class _Given(PydanticBaseSettingsSource):
    """A layer already read and merged (see :mod:`kryten_llm.config.layers`)."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self._data


# (merged file layers, runtime overrides layer) while a Settings is being built.
_layers: ContextVar[tuple[dict[str, Any], dict[str, Any]] | None] = ContextVar(
    "kryten_llm_config_layers", default=None
)


@contextmanager
def _reading(files: dict[str, Any], runtime: dict[str, Any]) -> Iterator[None]:
    token = _layers.set((files, runtime))
    try:
        yield
    finally:
        _layers.reset(token)


def load_settings(
    path: Path | str | None = None,
    *,
    runtime: Sequence[Override] | None = None,
    **overrides: Any,
) -> Settings:
    """Read every layer (see :mod:`kryten_llm.config.layers`) into a checked :class:`Settings`.

    Args:
        path: the ``--config`` JSON file; ``None`` uses defaults, the local file,
            ``KRYTEN_LLM_CONFIG`` and the environment.
        runtime: runtime overrides to use instead of the overrides file (checking a change).
        overrides: values that win over every other source (used by the CLI and tests).

    Raises:
        ConfigError: listing every problem with its path and how to fix it.
    """
    return settings_from(
        find_sources(Path(path) if path is not None else None, overrides=runtime), **overrides
    )


def settings_from(sources: Sources, **overrides: Any) -> Settings:
    """Build the settings from layers already read (see :func:`load_settings`)."""
    try:
        runtime: dict[str, Any] = {}
        if sources.overrides:  # resolved against every other layer, defaults included
            with _reading(sources.merged, {}):
                below = Settings(**overrides).model_dump(mode="json")
            runtime = sources.runtime_layer(below)
        with _reading(sources.merged, runtime):
            return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError([_explain(err) for err in exc.errors()]) from None


def _explain(err: Any) -> tuple[str, str, str]:
    """One pydantic error as (dotted path, what is wrong, how to fix it)."""
    loc = tuple(err.get("loc", ()))
    path = ".".join(str(part) for part in loc) or "(root)"
    kind = err.get("type", "")
    message = err.get("msg", "invalid")
    env_name = ENV_PREFIX + "__".join(str(part).upper() for part in loc)
    if kind == "extra_forbidden":
        fix = "remove this key"
        suggestion = _suggest(loc)
        if suggestion:
            fix += f" (did you mean {suggestion!r}?)"
        return path, "unknown key", fix
    if kind == "missing":
        return path, "required", f"add it to the config file or set {env_name}"
    ctx = err.get("ctx") or {}
    if kind == "value_error":
        return path, message.removeprefix("Value error, "), "correct it in the config file"
    if "expected" in ctx:
        return path, message, f"use one of {ctx['expected']}"
    return path, message, f"change the value in the config file or {env_name}"


def _suggest(loc: tuple[Any, ...]) -> str | None:
    """The closest known key to a misspelt one, found by walking the models along ``loc``."""
    model: Any = Settings
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return None
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        model = next((a for a in (annotation, *args) if hasattr(a, "model_fields")), None)
        if model is None:
            return None
    known = list(getattr(model, "model_fields", {}))
    matches = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    return matches[0] if matches else None
