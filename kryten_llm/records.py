"""The common fields of a response-log record, built in one place."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kryten_llm.bus.events import ChatEvent
    from kryten_llm.config import ChannelConfig
    from kryten_llm.pipeline.decisions import TriggerMatch


def chat_record(
    channel: ChannelConfig, chat: ChatEvent, trigger: TriggerMatch, *, rank: float | None = None
) -> dict[str, Any]:
    """Who said what where, and which trigger fired: the first fields of every log line."""
    sent_at = datetime.fromtimestamp(chat.time_ms / 1000, UTC).isoformat() if chat.time_ms else None
    record: dict[str, Any] = {
        "correlation_id": chat.envelope.correlation_id,
        "channel": channel.channel,
        "domain": channel.domain,
        "username": chat.username,
        "message_time": sent_at,
        "kind": "pm" if chat.is_pm else "chat",
        "input": chat.text,
        "trigger": {"kind": trigger.kind, "name": trigger.name},
    }
    if rank is not None:
        record["rank"] = rank
    return record
