"""Typed configuration: one ``Settings`` object, one nested model per component.

Sources are layered (:mod:`kryten_llm.config.layers`), strongest first: runtime overrides
(:mod:`kryten_llm.config.overrides`), environment variables ``KRYTEN_LLM_<SECTION>__<KEY>``
(``__`` nests), the file named by ``KRYTEN_LLM_CONFIG``, ``config.local.json``, the ``--config``
file, then the defaults below. Every model forbids unknown keys so that a typo fails at startup
with its path instead of being silently ignored. Secrets are
``SecretStr`` or are read from the environment variable named by ``api_key_env``; they are never
printed (see :func:`redacted`).

Components receive their own slice (``settings.ratelimit``, ``settings.formatting`` ...); there
is no module-level configuration global.
"""

from kryten_llm.config.base import ENV_PREFIX
from kryten_llm.config.batchcfg import BatchConfig, ModelPrice
from kryten_llm.config.behaviour import (
    FiltersConfig,
    FormattingConfig,
    PersonalityConfig,
    PromptsConfig,
    RankMultiplierConfig,
    RateLimitConfig,
    SpamConfig,
    TriggersConfig,
    TriggerWordConfig,
    ValidationConfig,
)
from kryten_llm.config.cluster import ClusterConfig, ShardingConfig
from kryten_llm.config.conversation import (
    DecayPoint,
    FollowUpConfig,
    MediaChangeConfig,
    ParticipationConfig,
)
from kryten_llm.config.llm import CircuitConfig, LLMConfig, ProviderConfig, RetryConfig
from kryten_llm.config.memory import ExtractionConfig, MemoryConfig
from kryten_llm.config.redact import MASK, redact_url, redacted
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
from kryten_llm.config.settings import Settings, load_settings
from kryten_llm.config.streaming import StreamingConfig, TypingConfig

__all__ = [
    "ENV_PREFIX",
    "MASK",
    "BatchConfig",
    "BotConfig",
    "ChannelConfig",
    "CircuitConfig",
    "ClusterConfig",
    "DecayPoint",
    "ExtractionConfig",
    "FallbackConfig",
    "FiltersConfig",
    "FollowUpConfig",
    "FormattingConfig",
    "LLMConfig",
    "LoggingConfig",
    "MediaChangeConfig",
    "MemoryConfig",
    "ModelPrice",
    "NatsConfig",
    "ParticipationConfig",
    "PersonalityConfig",
    "ProcessingConfig",
    "PromptsConfig",
    "ProviderConfig",
    "RankMultiplierConfig",
    "RateLimitConfig",
    "RetryConfig",
    "SendConfig",
    "ServiceConfig",
    "Settings",
    "ShardingConfig",
    "SpamConfig",
    "StreamingConfig",
    "TriggerWordConfig",
    "TriggersConfig",
    "TypingConfig",
    "ValidationConfig",
    "WebConfig",
    "load_settings",
    "redact_url",
    "redacted",
]
