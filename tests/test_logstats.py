"""``kryten-llm logs stats`` / ``logs plot`` over response logs, unreadable lines included."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from kryten_llm.cli import main


def record(day: str, user: str, reason: str, **extra: Any) -> dict[str, Any]:
    return {
        "message_time": f"{day}T20:00:00+00:00",
        "username": user,
        "trigger": {"kind": "mention", "name": extra.pop("trigger", "mention")},
        "answered": reason in ("answered", "fallback"),
        "reason": reason,
        **extra,
    }


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    folder = tmp_path / "logs"
    folder.mkdir()
    day1 = [
        record(
            "2026-11-21",
            "alice",
            "answered",
            provider="local",
            total_ms=100,
            latency_ms=90,
            usage={"prompt_tokens": 300, "completion_tokens": 20},
            cost_usd=0.001,
        ),
        record("2026-11-21", "alice", "rate_limited"),
        record(
            "2026-11-21",
            "bob",
            "answered",
            provider="cloud",
            total_ms=300,
            latency_ms=280,
            usage={"prompt_tokens": 500, "completion_tokens": 40},
            cost_usd=0.004,
            trigger="trivia",
        ),
    ]
    day2 = [
        record(
            "2026-11-22",
            "<script>x</script>",
            "fallback",
            fallback_pool="personality-c",
            total_ms=5,
        ),
        record("2026-11-22", "alice", "llm_failed"),
    ]
    lines1 = [json.dumps(r) for r in day1]
    lines2 = [json.dumps(r) for r in day2] + ["{torn line", "[1, 2]", ""]
    (folder / "responses-2026-11-21.jsonl").write_text("\n".join(lines1) + "\n")
    (folder / "responses-2026-11-22.jsonl").write_text("\n".join(lines2) + "\n")
    return folder


def test_stats_as_json_count_everything(logs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["logs", "stats", str(logs), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["records"] == 5
    assert data["skipped_lines"] == 2
    assert data["answered"] == 3
    assert data["decisions"] == {"answered": 2, "rate_limited": 1, "fallback": 1, "llm_failed": 1}
    assert data["triggers"] == {"mention": 4, "trivia": 1}
    assert next(iter(data["top_users"].items())) == ("alice", 3)
    assert data["providers"] == {"local": 1, "cloud": 1, "fallback pool": 1}
    assert data["latency_ms"]["reply_total"]["count"] == 3
    assert data["latency_ms"]["reply_total"]["max"] == 300
    day = data["days"]["2026-11-21"]
    assert day == {
        "records": 3,
        "answered": 2,
        "prompt_tokens": 800,
        "completion_tokens": 60,
        "cost_usd": 0.005,
    }
    assert data["days"]["2026-11-22"]["answered"] == 1


def test_stats_as_text_and_from_the_configured_folder(
    logs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"logging": {"response_log_dir": str(logs)}}))
    assert main(["logs", "stats", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "5 records in 2 file(s); 3 answered; 2 unreadable lines skipped" in out
    assert "rate_limited" in out
    assert "2026-11-21" in out


def test_a_missing_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["logs", "stats", str(tmp_path / "nope.jsonl")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_plot_writes_a_self_contained_page_with_escaped_text(
    logs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "report.html"
    assert main(["logs", "plot", str(logs), "--output", str(report)]) == 0
    page = report.read_text()
    assert "<script>" not in page  # the user name is escaped, and the page has no script
    assert "&lt;script&gt;x&lt;/script&gt;" in page
    assert "http" not in page  # nothing fetched from anywhere

    class Charts(HTMLParser):
        svgs = 0
        rects = 0

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.svgs += tag == "svg"
            self.rects += tag == "rect"

    charts = Charts()
    charts.feed(page)
    assert charts.svgs == 11  # and replies, share, activations per hour (conv14)
    assert charts.rects >= 15


def test_engagement_figures_per_hour_from_the_logs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Replies per hour, share of chat, activations per trigger, refusals by kind and the time
    to first part, read from the response log (first_part_ms when the reply streamed)."""
    lines = [
        {**record("2026-11-30", "a", "answered", first_part_ms=400), "chat_share": 0.01},
        {**record("2026-11-30", "b", "answered", trigger="join"), "chat_share": 0.03},
        {**record("2026-11-30", "c", "rate_limited", trigger="join", limit="share_budget")},
        {**record("2026-11-30", "d", "rate_limited", limit="user_cooldown"), "chat_share": 0.02},
        {
            **record("2026-11-30", "e", "answered", first_part_ms=800),
            "message_time": "2026-11-30T21:05:00+00:00",
            "chat_share": 0.04,
        },
    ]
    path = tmp_path / "responses-2026-11-30.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert main(["logs", "stats", str(path), "--json"]) == 0
    engagement = json.loads(capsys.readouterr().out)["engagement"]
    assert engagement["replies_per_hour"] == {"mean": 1.5, "max": 2}
    assert engagement["share_max"] == 0.04
    assert engagement["first_part_ms"]["count"] == 2
    assert engagement["first_part_ms"]["max"] == 800
    assert engagement["hours"]["2026-11-30T20"] == {
        "replies": 2,
        "share": 0.03,
        "activations": {"mention": 2, "join": 2},
        "refusals": {"share_budget": 1, "user_cooldown": 1},
    }
    assert engagement["hours"]["2026-11-30T21"]["replies"] == 1
    assert main(["logs", "stats", str(path)]) == 0
    text = capsys.readouterr().out
    assert "replies per hour: mean 1.5, max 2" in text
    assert "share of chat: max 4.0%" in text
    assert "2026-11-30T20" in text
    assert "share_budget 1" in text
    report = tmp_path / "report.html"
    assert main(["logs", "plot", str(path), "--output", str(report)]) == 0
    page = report.read_text()
    for title in ("Replies per hour", "Share of chat per hour", "Rate-limit refusals by kind"):
        assert title in page
    assert "2026-11-30T20 share_budget" in page
