"""The self-test's scratch folder: the bot's config, a fallback pool and a batch input.

Everything the self-test's bot needs is written here, in a new folder, so the operator's own
``config.json``, logs and pools are never read or touched. The config is shaped for the
scenarios: the ``scripted`` provider answers mentions (echoing the message, so a reply can be
matched to its question); the trigger word ``failover`` asks the failing HTTP provider first
and ``scripted`` second; the trigger word ``blackout`` asks only the failing one, so its
replies come from its fallback pool; cooldowns are off so that scenarios never wait for each
other, and the spam guard refuses the second identical message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kryten_llm.pools import pool_file_name

CHANNEL = "SelfTest"
DOMAIN = "selftest.local"
BOT_USERNAME = "SelfTestBot"
MENTION = "cynthia"  # a name of the default personality: a mention
SCRIPTED = "scripted"
FLAKY = "flaky"
FAILOVER_WORD = "failover"
BLACKOUT_WORD = "blackout"
POOL_DIR = "fallback"
LOG_DIR = "logs"
BATCH_ROWS = 50
POOL_LINES = (
    "The projector is sulking; I will be back once it stops.",
    "Every model I know is on a smoke break. Talk amongst yourselves.",
    "Technical difficulties: please enjoy this line from my emergency stash.",
)


@dataclass(frozen=True, slots=True)
class Scratch:
    """The scratch folder's paths."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def bot_log(self) -> Path:
        return self.root / "bot.log"

    @property
    def responses(self) -> Path:
        return self.root / LOG_DIR

    @property
    def pool(self) -> Path:
        return self.root / POOL_DIR / pool_file_name(BLACKOUT_WORD)

    @property
    def batch_input(self) -> Path:
        return self.root / "batch-in.txt"

    @property
    def batch_config(self) -> Path:
        return self.root / "batch-config.json"


# The batch's own provider: slow enough (50 rows, 4 at a time, 40 ms each) that the SIGKILL
# lands in the middle of the run, fast enough that the scenario takes about a second.
BATCH_CONFIG: dict[str, Any] = {
    "llm": {
        "providers": {"slow": {"type": "scripted", "model": "echo", "latency_ms": 40}},
        "default_provider": "slow",
    },
    "logging": {"response_log_dir": LOG_DIR},
}


def bot_config(nats_url: str, flaky_base_url: str) -> dict[str, Any]:
    """The bot's config for the scenarios (relative paths: the bot runs in the folder)."""
    return {
        "nats": {"servers": [nats_url], "connection_name": "kryten-llm-selftest"},
        "channels": [{"domain": DOMAIN, "channel": CHANNEL}],
        "bot": {"username": BOT_USERNAME},
        "llm": {
            "providers": {
                SCRIPTED: {"type": "scripted", "model": "selftest-echo"},
                FLAKY: {
                    "type": "openai",
                    "base_url": flaky_base_url,
                    "model": "flaky-1",
                    "timeout_seconds": 20,
                },
            },
            "default_provider": SCRIPTED,
            "retry": {"attempts": 1, "base_delay_seconds": 0.01, "max_delay_seconds": 0.05},
            "circuit": {"failure_threshold": 50},
        },
        "triggers": {
            "words": [
                {
                    "name": FAILOVER_WORD,
                    "patterns": ["failover drill"],
                    "providers": [FLAKY, SCRIPTED],
                },
                {"name": BLACKOUT_WORD, "patterns": ["blackout drill"], "providers": [FLAKY]},
            ]
        },
        "ratelimit": {
            "global_per_minute": 600,
            "global_per_hour": 6000,
            "global_cooldown_seconds": 0,
            "user_per_hour": 600,
            "user_cooldown_seconds": 0,
            "mention_cooldown_seconds": 0,
            "unsolicited_per_window": 600,
        },
        "spam": {"max_identical": 2, "base_penalty_seconds": 5},
        "validation": {"similarity_threshold": 0.99},
        "send": {"min_gap_seconds": 0.05, "jitter_seconds": 0},
        "fallback": {"pool_dir": POOL_DIR},
        "web": {"port": 0},
        "logging": {"level": "INFO", "format": "json", "response_log_dir": LOG_DIR},
    }


def write_scratch(root: Path, nats_url: str, flaky_base_url: str) -> Scratch:
    """Write the config, the ``blackout`` pool and the batch input into ``root``."""
    scratch = Scratch(root)
    scratch.config.write_text(
        json.dumps(bot_config(nats_url, flaky_base_url), indent=2), encoding="utf-8"
    )
    scratch.pool.parent.mkdir(parents=True, exist_ok=True)
    scratch.pool.write_text(json.dumps(list(POOL_LINES), indent=2), encoding="utf-8")
    scratch.batch_config.write_text(json.dumps(BATCH_CONFIG, indent=2), encoding="utf-8")
    scratch.batch_input.write_text(
        "".join(f"selftest row {i}\n" for i in range(BATCH_ROWS)), encoding="utf-8"
    )
    return scratch
