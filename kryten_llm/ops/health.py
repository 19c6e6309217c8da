"""One verdict on the bot's health, with its reasons, for ``/health``, heartbeats and alerts.

Health measures what the bot can do right now, not only how it is configured:

``failing``: the bot cannot answer at all: not running, not connected to NATS, no reply worker
alive, the reply queue has not moved for ``stall_after_seconds``, every channel's sending is
paused by a cooldown for longer than that, or no provider in the chain can answer (its circuit
is open, it cools down, is misconfigured, or failed its last call: the startup probe counts) and
no fallback pool has lines. ``degraded``: it answers, but something needs a look (a provider
cannot answer, every provider is down but the fallback pools answer, fewer reply workers than
configured, the queue is full, a channel's sending is paused, a channel has been silent longer
than ``stale_after_seconds``). ``healthy`` otherwise. Pausing and dry-run are the operator's
choices: reported, never a degradation. The ``cluster`` component says which instance this is
and how many peers it sees (several instances of one service).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["healthy", "degraded", "failing"]
_RANK: dict[Status, int] = {"healthy": 0, "degraded": 1, "failing": 2}
_UNAVAILABLE = ("open", "cooling", "misconfigured")


@dataclass(frozen=True, slots=True)
class Liveness:
    """What the running parts are doing now (as opposed to how they are configured)."""

    workers: int  # reply workers configured
    workers_alive: int
    queue_stalled_seconds: float  # jobs waiting with none taken for this long (0: moving)
    send_paused_seconds: Mapping[str, float] = field(default_factory=dict)  # per channel
    worker_errors: int = 0  # unexpected exceptions the workers survived
    task_restarts: int = 0
    cluster: Mapping[str, Any] | None = None  # instance id, mode, peers seen (issue 15)


@dataclass(frozen=True, slots=True)
class HealthInputs:
    """What the verdict is made from; gathered by the service."""

    running: bool
    nats_connected: bool
    channel_ages: Mapping[str, float | None]  # seconds since the last event, None: never
    providers: Mapping[str, Mapping[str, Any]]  # ProviderHealth snapshots
    chain: Sequence[str]
    queue_depth: int
    queue_capacity: int
    uptime_seconds: float
    paused: bool = False
    dry_run: bool = False
    fallback_lines: int = 0
    liveness: Liveness | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def assess(
    inputs: HealthInputs, *, stale_after_seconds: float, stall_after_seconds: float = 30.0
) -> dict[str, Any]:
    """The verdict: ``status``, ``reasons`` and the state of each component."""
    status: Status = "healthy"
    reasons: list[str] = []

    def worse(level: Status, reason: str) -> None:
        nonlocal status
        reasons.append(reason)
        if _RANK[level] > _RANK[status]:
            status = level

    if not inputs.running:
        worse("failing", "the service is not running")
    if not inputs.nats_connected:
        worse("failing", "not connected to NATS")
    channels: dict[str, Any] = {}
    for name, age in inputs.channel_ages.items():
        silent = age if age is not None else inputs.uptime_seconds
        stale = silent > stale_after_seconds
        channels[name] = {
            "last_event_age_seconds": round(age, 1) if age is not None else None,
            "status": "stale" if stale else "ok",
        }
        if stale:
            worse("degraded", f"no events from {name} for {silent:.0f} s")
    providers: dict[str, Any] = {}
    usable = 0
    for name, snapshot in inputs.providers.items():
        state = str(snapshot.get("state"))
        failing = int(snapshot.get("consecutive_failures") or 0)
        providers[name] = {
            "state": state,
            "last_error": snapshot.get("last_error"),
            "consecutive_failures": failing,
        }
        if state in _UNAVAILABLE:
            worse("degraded", f"provider {name} is {state.replace('_', ' ')}")
        elif failing:
            kind = snapshot.get("last_error_kind") or "an error"
            worse("degraded", f"provider {name} failed its last {failing} call(s) ({kind})")
        elif name in inputs.chain:
            usable += 1
    if inputs.chain and usable == 0:
        if inputs.fallback_lines:
            worse("degraded", "no provider can answer: answering from the fallback pools")
        else:
            worse("failing", "no provider in the chain can answer")
    queue_full = inputs.queue_depth >= inputs.queue_capacity
    if queue_full:
        worse("degraded", f"reply queue full ({inputs.queue_depth}/{inputs.queue_capacity})")
    workers = _liveness(inputs.liveness, stall_after_seconds, worse)
    return {
        "status": status,
        "reasons": reasons,
        "components": {
            "service": "ok" if inputs.running else "failing",
            "nats": {"connected": inputs.nats_connected},
            "channels": channels,
            "providers": providers,
            "queue": {
                "depth": inputs.queue_depth,
                "capacity": inputs.queue_capacity,
                "status": "full" if queue_full else "ok",
            },
            "workers": workers,
            "cluster": _cluster(inputs.liveness),
        },
        "paused": inputs.paused,
        "dry_run": inputs.dry_run,
        "uptime_seconds": round(inputs.uptime_seconds, 1),
        **inputs.extra,
    }


def _liveness(
    live: Liveness | None, stall_after: float, worse: Callable[[Status, str], None]
) -> dict[str, Any]:
    """Judge the running parts; returns their component entry."""
    if live is None:
        return {}
    if live.workers_alive == 0:
        worse("failing", "no reply worker is running")
    elif live.workers_alive < live.workers:
        worse("degraded", f"{live.workers_alive} of {live.workers} reply workers running")
    if live.queue_stalled_seconds > stall_after:
        worse("failing", f"reply queue has not moved for {live.queue_stalled_seconds:.0f} s")
    paused = {name: s for name, s in live.send_paused_seconds.items() if s > 0}
    for name, seconds in sorted(paused.items()):
        worse("degraded", f"sending to {name} paused by a cooldown for {seconds:.0f} s")
    long_pauses = [s for s in live.send_paused_seconds.values() if s > stall_after]
    if live.send_paused_seconds and len(long_pauses) == len(live.send_paused_seconds):
        worse("failing", "sending is paused in every channel")
    return {
        "configured": live.workers,
        "alive": live.workers_alive,
        "queue_stalled_seconds": round(live.queue_stalled_seconds, 1),
        "send_paused_seconds": {name: round(s, 1) for name, s in paused.items()},
        "errors": live.worker_errors,
        "task_restarts": live.task_restarts,
    }


def _cluster(live: Liveness | None) -> dict[str, Any]:
    """This instance among its peers: ``{"instance_id", "mode", "peers", ...}`` (issue 15)."""
    return dict(live.cluster) if live is not None and live.cluster is not None else {}
