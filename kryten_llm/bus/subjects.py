"""NATS subject names of the Kryten protocol, built in one place.

The rules follow ``PROTOCOL.md`` §2 (event subjects), §4 (the unified command subject) and §6
(lifecycle and discovery), plus the bot's own operator subjects (``kryten.<service>.command``,
the explore progress/stop pair) and the monitoring mirrors of §6.2. Nothing else in the code
base spells a subject by hand: import the constant or function from here.
"""

from __future__ import annotations

import re

EVENT_ROOT = "kryten.events.cytube"
COMMAND_SUBJECT = "kryten.robot.command"
DISCOVERY_POLL = "kryten.service.discovery.poll"
ROBOT_STARTUP = "kryten.lifecycle.robot.startup"
GROUP_RESTART = "kryten.lifecycle.group.restart"
# Not the bridge's protocol (PROTOCOL.md §6.2): where ``service.mirror_subjects`` copies
# lifecycle events for the monitoring recipes of the ecosystem's planning documents.
DISCOVERY_MIRROR = "kryten.service.discovery"
HEARTBEAT_MIRROR = "kryten.service.heartbeat"

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


def lifecycle_mirrors(service: str, event: str) -> tuple[str, ...]:
    """Where a lifecycle ``event`` is also published with ``service.mirror_subjects`` on.

    ``startup`` → ``kryten.service.discovery``; ``heartbeat`` → ``kryten.service.heartbeat``
    and ``kryten.service.heartbeat.<service>``; anything else → nowhere.
    """
    if event == "startup":
        return (DISCOVERY_MIRROR,)
    if event == "heartbeat":
        return (HEARTBEAT_MIRROR, f"{HEARTBEAT_MIRROR}.{service}")
    return ()


def service_command(service: str) -> str:
    """``kryten.<service>.command``: the bot's request/reply operator endpoint."""
    return f"kryten.{service}.command"


def explore_progress(service: str) -> str:
    """``kryten.<service>.explore.progress``: an explore run's snapshots, once a second."""
    return f"kryten.{service}.explore.progress"


def explore_stop(service: str) -> str:
    """``kryten.<service>.explore.stop``: ask the explore run named in the body to stop."""
    return f"kryten.{service}.explore.stop"
