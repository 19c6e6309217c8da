"""NATS subject names of the Kryten protocol, built in one place.

The rules follow ``PROTOCOL.md`` §2 (event subjects), §4 (the unified command subject) and §6
(lifecycle and discovery). Nothing else in the code base spells a subject by hand.
"""

from __future__ import annotations

import re

EVENT_ROOT = "kryten.events.cytube"
COMMAND_SUBJECT = "kryten.robot.command"
DISCOVERY_POLL = "kryten.service.discovery.poll"
ROBOT_STARTUP = "kryten.lifecycle.robot.startup"
GROUP_RESTART = "kryten.lifecycle.group.restart"

# Step 5 of the bridge's normalisation: characters deleted outright (PROTOCOL.md §2.1).
_DELETED = re.compile(r"[!@#$%^&*()+=\[\]{|}\\:;\"'<>,?/]")


def normalize_token(value: str) -> str:
    """Turn a channel or event name into a subject token exactly as Kryten-Robot does.

    >>> normalize_token("My Channel!")
    'my-channel'
    """
    token = value.lower().replace(".", "").replace(" ", "-")
    token = token.replace("*", "").replace(">", "")
    return _DELETED.sub("", token)[:100]


def channel_events(channel: str) -> str:
    """The wildcard subject carrying every event of one channel."""
    return f"{EVENT_ROOT}.{normalize_token(channel)}.>"


def event_subject(channel: str, event_name: str) -> str:
    """The subject the bridge publishes ``event_name`` of ``channel`` on."""
    return f"{EVENT_ROOT}.{normalize_token(channel)}.{normalize_token(event_name)}"


def lifecycle(service: str, event: str) -> str:
    """``kryten.lifecycle.<service>.<event>`` (startup, heartbeat, shutdown)."""
    return f"kryten.lifecycle.{service}.{event}"
