"""The operator surface's pure parts: the metrics text format and the health verdict."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kryten_llm.ops.health import HealthInputs, assess
from kryten_llm.ops.metrics import Registry
from kryten_llm.ops.telemetry import Telemetry
from kryten_llm.pipeline.decisions import Reason
from kryten_llm.pipeline.outcome import Outcome
from kryten_llm.pipeline.stats import Count, Stats


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_the_registry_renders_what_a_prometheus_parser_reads_back() -> None:
    registry = Registry("t_")
    calls = registry.counter("calls", "Calls.", ("provider", "outcome"))
    latency = registry.histogram("latency_seconds", "Latency.", ("provider",), (0.1, 1.0))
    registry.gauge("depth", "Depth.", lambda: {(): 3.0})
    registry.counter_from("seen", "Seen, by kind.", lambda: {("b",): 2.0, ("a",): 1.0}, ("kind",))
    calls.labels("a", "ok").inc()
    calls.labels("a", "ok").inc()
    calls.labels('we"ird\\name\n', "ProviderTimeout").inc()
    for seconds in (0.05, 0.5, 0.7, 5.0):
        latency.labels("a").observe(seconds)
    parsed = families(registry.render())
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for s in parsed["t_calls"].samples
    }
    assert samples[("t_calls_total", (("outcome", "ok"), ("provider", "a")))] == 2
    assert (
        samples[("t_calls_total", (("outcome", "ProviderTimeout"), ("provider", 'we"ird\\name\n')))]
        == 1
    )
    buckets = {
        s.labels["le"]: s.value
        for s in parsed["t_latency_seconds"].samples
        if s.name.endswith("_bucket")
    }
    assert buckets == {"0.1": 1, "1.0": 3, "+Inf": 4}  # cumulative
    by_name = {s.name: s.value for s in parsed["t_latency_seconds"].samples}
    assert by_name["t_latency_seconds_count"] == 4
    assert by_name["t_latency_seconds_sum"] == pytest.approx(6.25)
    assert parsed["t_depth"].samples[0].value == 3
    assert [(s.name, s.labels, s.value) for s in parsed["t_seen"].samples] == [
        ("t_seen_total", {"kind": "a"}, 1),
        ("t_seen_total", {"kind": "b"}, 2),
    ]
    assert parsed["t_calls"].type == "counter"
    assert parsed["t_seen"].type == "counter"
    assert parsed["t_depth"].type == "gauge"
    assert parsed["t_latency_seconds"].type == "histogram"


def test_the_text_has_no_created_timestamps() -> None:
    """prometheus_client's ``_created`` series would be one more family per counter."""
    registry = Registry("t_")
    registry.counter("calls", "Calls.").inc()
    registry.histogram("latency_seconds", "Latency.").observe(0.2)
    text = registry.render()
    assert "_created" not in text
    assert set(families(text)) == {"t_calls", "t_latency_seconds"}


def test_two_registries_in_one_process_share_nothing() -> None:
    """Several bots (or tests) in one process each count their own, and nothing is global."""
    first, second = Registry("t_"), Registry("t_")
    first.counter("calls", "Calls.").inc(3)
    second.counter("calls", "Calls.")
    assert families(first.render())["t_calls"].samples[0].value == 3
    assert families(second.render())["t_calls"].samples[0].value == 0
    assert "t_calls_total" not in generate_latest(REGISTRY).decode()


def test_metrics_start_no_thread() -> None:
    """Our aiohttp server serves /metrics: prometheus_client must not start one of its own."""
    before = threading.enumerate()
    telemetry = Telemetry(Stats())
    telemetry.on_call("a", "ok", 0.1, None)
    telemetry.registry.render()
    assert threading.enumerate() == before


def test_a_name_is_registered_once_per_registry() -> None:
    registry = Registry("t_")
    registry.gauge("depth", "Depth.", lambda: {(): 1.0})
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.counter("depth", "Depth again.")


def test_labels_are_checked_and_counters_never_go_down() -> None:
    registry = Registry()
    counter = registry.counter("c", "C.", ("a",))
    with pytest.raises(ValueError, match="label"):
        counter.labels("x", "y")
    with pytest.raises(ValueError, match="non-negative"):
        counter.labels("x").inc(-1)
    registry.gauge("g", "G.", lambda: {("x", "y"): 1.0}, ("a",))
    with pytest.raises(ValueError, match="takes labels"):
        registry.render()


def test_telemetry_counts_from_stats_without_user_labels() -> None:
    stats = Stats()
    telemetry = Telemetry(stats)
    stats.event_types["chat"] += 5
    stats.decisions[Reason.ANSWERED] += 2
    stats.triggers["mention"] += 3
    telemetry.on_outcome(
        Outcome(
            "c1",
            "MyChannel",
            "cytu.be",
            "alice",
            None,
            "chat",
            "cynthia hi",
            "mention",
            "mention",
            Reason.ANSWERED,
            parts=("a", "b"),
            total_ms=1500,
        )
    )
    text = telemetry.registry.render()
    parsed = families(text)
    assert parsed["kryten_llm_events"].samples[0].labels == {"type": "chat"}
    assert parsed["kryten_llm_events"].samples[0].value == 5
    assert parsed["kryten_llm_reply_parts"].samples[0].value == 2
    assert "alice" not in text  # never a per-user label
    assert telemetry.recent[0]["username"] == "alice"
    assert telemetry.recent[0]["trigger"] == "mention"


def test_the_sampler_turns_counters_into_rates() -> None:
    now = [1000.0]
    stats = Stats()
    telemetry = Telemetry(stats, clock=lambda: now[0], monotonic=lambda: now[0])
    telemetry.sample()
    stats.totals[Count.EVENTS] += 30
    stats.totals[Count.CHAT] += 10
    now[0] += 2
    point = telemetry.sample()
    assert point["events"] == 15
    assert point["chat"] == 5
    assert point["answered"] == 0
    assert list(telemetry.series) == [point]


def inputs(**changes: Any) -> HealthInputs:
    base: dict[str, Any] = {
        "running": True,
        "nats_connected": True,
        "channel_ages": {"MyChannel": 3.0},
        "providers": {"a": {"state": "closed"}, "b": {"state": "closed"}},
        "chain": ["a", "b"],
        "queue_depth": 0,
        "queue_capacity": 32,
        "uptime_seconds": 100.0,
    }
    return HealthInputs(**(base | changes))


@pytest.mark.parametrize(
    ("changes", "status", "reason"),
    [
        ({}, "healthy", None),
        ({"paused": True, "dry_run": True}, "healthy", None),
        (
            {"providers": {"a": {"state": "open"}, "b": {"state": "closed"}}},
            "degraded",
            "provider a is open",
        ),
        (
            {"providers": {"a": {"state": "misconfigured"}, "b": {"state": "cooling"}}},
            "failing",
            "no provider in the chain can answer",
        ),
        (
            {
                "providers": {"a": {"state": "open"}, "b": {"state": "open"}},
                "fallback_lines": 12,
            },
            "degraded",
            "no provider can answer: answering from the fallback pools",
        ),
        ({"nats_connected": False}, "failing", "not connected to NATS"),
        ({"running": False}, "failing", "the service is not running"),
        (
            {"channel_ages": {"MyChannel": 1000.0}},
            "degraded",
            "no events from MyChannel for 1000 s",
        ),
        (
            {"channel_ages": {"MyChannel": None}, "uptime_seconds": 950.0},
            "degraded",
            "no events from MyChannel for 950 s",
        ),
        ({"queue_depth": 32}, "degraded", "reply queue full (32/32)"),
    ],
)
def test_the_health_verdict(changes: dict[str, Any], status: str, reason: str | None) -> None:
    verdict = assess(inputs(**changes), stale_after_seconds=900)
    assert verdict["status"] == status
    if reason is None:
        assert verdict["reasons"] == []
    else:
        assert reason in verdict["reasons"]
