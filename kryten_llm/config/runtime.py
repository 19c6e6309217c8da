"""Where the bot runs: NATS, channels, account, sending, workers, logs, service, web, pools."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from kryten_llm.config.base import Section
from kryten_llm.config.behaviour import FormattingConfig, RateLimitConfig, TriggersConfig


class NatsConfig(Section):
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


def channel_key(domain: str, channel: str) -> str:
    """How a channel is looked up everywhere: the domain as configured, the channel ignoring
    case (``cytu.be/mychannel``)."""
    return f"{domain}/{channel.lower()}"


class ChannelConfig(Section):
    """One CyTube channel served through one Kryten-Robot bridge."""

    domain: str = Field("cytu.be", min_length=1, description="Exactly as the bridge has it.")
    channel: str = Field(min_length=1, description="Exactly as the bridge has it (case kept).")
    personality: str | None = Field(
        None,
        description="A key of `personalities`: the character in this channel (default: "
        "`active_personality`).",
    )
    triggers: TriggersConfig | None = Field(
        None, description="This channel's own triggers, replacing the top-level `triggers`."
    )
    ratelimit: RateLimitConfig | None = Field(
        None,
        description="This channel's own limits (counted apart from the other channels), "
        "replacing the top-level `ratelimit`.",
    )
    formatting: FormattingConfig | None = Field(
        None, description="This channel's own reply shape, replacing the top-level `formatting`."
    )

    @cached_property
    def key(self) -> str:
        """How a channel is looked up: the domain as configured, the channel ignoring case.

        Read on every event and reply, so built once: a channel's config is never changed in
        place (a reload builds new settings).
        """
        return channel_key(self.domain, self.channel)


class BotConfig(Section):
    """The CyTube account the bridge is logged in as."""

    username: str = Field(
        "CynthiaRothbot",
        min_length=1,
        max_length=20,
        description="The bridge's account name; its own echoes are ignored by this name.",
    )


class SendConfig(Section):
    """How replies are handed to the bridge."""

    min_gap_seconds: float = Field(1.0, ge=0, le=60, description="Between two chat messages.")
    jitter_seconds: float = Field(0.5, ge=0, le=10)
    noflood_backoff_seconds: float = Field(5.0, ge=0, le=600)
    await_ack: bool = Field(False, description="Send as a NATS request and log the bridge's ack.")
    ack_timeout_seconds: float = Field(2.0, gt=0, le=30)
    source: str = Field("llm", min_length=1, description="meta.source of every command.")


class ProcessingConfig(Section):
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


class LoggingConfig(Section):
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


class ServiceConfig(Section):
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


class FallbackConfig(Section):
    """Lines to say when every provider fails (filled by ``kryten-llm explore``)."""

    enabled: bool = Field(True, description="Use the fallback pools when no provider answers.")
    pool_dir: Path = Field(
        Path("fallback"),
        description="Where explore --for-trigger/--for-personality writes <name>.json pools.",
    )


class WebConfig(Section):
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
    stall_after_seconds: float = Field(
        30.0,
        ge=1,
        le=3600,
        description="A reply queue that has not moved this long (and longer than the reply "
        "deadline), or sending paused this long in every channel, makes /health failing.",
    )
