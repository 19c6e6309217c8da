"""``kryten-llm logs stats`` and ``logs plot``: what the response logs say about the bot.

Reads ``responses-YYYY-MM-DD.jsonl`` files line by line (never a whole file in memory: only
counters, per-user counts and one latency sample per reply are kept) as
:class:`~kryten_llm.pipeline.outcome.Outcome` values, skips and counts lines that are not
records, and
summarises decisions by reason, triggers, the most active users, which providers answered,
latency percentiles, and tokens and cost per day. ``plot`` writes the same summary as one
self-contained HTML page with inline SVG charts: no script, no asset from the internet.
"""

from __future__ import annotations

import html
import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kryten_llm import console
from kryten_llm.pipeline.decisions import Reason
from kryten_llm.pipeline.outcome import Outcome

TOP_USERS = 10


@dataclass
class DayTotals:
    records: int = 0
    answered: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


@dataclass
class HourTotals:
    """conv14: the engagement figures of one UTC hour."""

    replies: int = 0
    activations: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    share: float | None = None  # the highest share of chat stamped on a line of the hour


@dataclass
class LogSummary:
    """Counters over every record read."""

    files: list[str] = field(default_factory=list)
    records: int = 0
    skipped_lines: int = 0
    answered: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    triggers: Counter[str] = field(default_factory=Counter)
    users: Counter[str] = field(default_factory=Counter)
    providers: Counter[str] = field(default_factory=Counter)
    total_ms: list[float] = field(default_factory=list)
    llm_ms: list[float] = field(default_factory=list)
    days: dict[str, DayTotals] = field(default_factory=lambda: defaultdict(DayTotals))
    hours: dict[str, HourTotals] = field(default_factory=lambda: defaultdict(HourTotals))
    first_part_ms: list[float] = field(default_factory=list)

    def add(self, outcome: Outcome, day: str, first_part: float | None = None) -> None:
        self.records += 1
        self._engagement(outcome, day, first_part)
        self.reasons[outcome.reason.value] += 1
        if outcome.trigger_name or outcome.trigger_kind:
            self.triggers[outcome.trigger_name or outcome.trigger_kind] += 1
        if outcome.username:
            self.users[outcome.username] += 1
        totals = self.days[day]
        totals.records += 1
        if outcome.answered:
            self.answered += 1
            totals.answered += 1
            source = outcome.provider or ("fallback pool" if outcome.fallback_pool else "unknown")
            self.providers[source] += 1
            if outcome.total_ms is not None:
                self.total_ms.append(outcome.total_ms)
        if outcome.latency_ms is not None:
            self.llm_ms.append(outcome.latency_ms)
        if outcome.usage is not None:
            totals.prompt_tokens += outcome.usage.prompt_tokens
            totals.completion_tokens += outcome.usage.completion_tokens
        if outcome.cost_usd is not None:
            totals.cost_usd += outcome.cost_usd

    def _engagement(self, outcome: Outcome, day: str, first_part: float | None) -> None:
        """conv14: replies, share, activations and refusals per hour; time to first part."""
        when = outcome.logged_at or outcome.message_time or ""
        hour = self.hours[when[:13] if len(when) >= 13 else day]
        hour.activations[outcome.trigger_name or outcome.trigger_kind or "unknown"] += 1
        if outcome.answered:
            hour.replies += 1
        if outcome.reason is Reason.RATE_LIMITED:
            hour.refusals[outcome.limit or "unknown"] += 1
        if outcome.chat_share is not None:
            hour.share = max(hour.share or 0.0, outcome.chat_share)
        if first_part is not None:
            self.first_part_ms.append(first_part)

    def engagement(self) -> dict[str, Any]:
        """The channel plan's figures: per hour, and the time to the first part overall."""
        hours = dict(sorted(self.hours.items()))
        replies = [h.replies for h in hours.values()]
        return {
            "replies_per_hour": {
                "mean": round(statistics.fmean(replies), 1) if replies else None,
                "max": max(replies, default=None),
            },
            "share_max": max(
                (h.share for h in hours.values() if h.share is not None), default=None
            ),
            "first_part_ms": _percentiles(self.first_part_ms),
            "hours": {
                hour: {
                    "replies": h.replies,
                    "share": h.share,
                    "activations": dict(h.activations.most_common()),
                    "refusals": dict(h.refusals.most_common()),
                }
                for hour, h in hours.items()
            },
        }

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``--json`` and the HTML report."""
        return {
            "files": self.files,
            "records": self.records,
            "skipped_lines": self.skipped_lines,
            "answered": self.answered,
            "decisions": dict(self.reasons.most_common()),
            "triggers": dict(self.triggers.most_common()),
            "top_users": dict(self.users.most_common(TOP_USERS)),
            "providers": dict(self.providers.most_common()),
            "latency_ms": {
                "reply_total": _percentiles(self.total_ms),
                "llm": _percentiles(self.llm_ms),
            },
            "days": {
                day: {
                    "records": t.records,
                    "answered": t.answered,
                    "prompt_tokens": t.prompt_tokens,
                    "completion_tokens": t.completion_tokens,
                    "cost_usd": round(t.cost_usd, 6),
                }
                for day, t in sorted(self.days.items())
            },
            "engagement": self.engagement(),
        }


def _percentiles(samples: list[float]) -> dict[str, float] | None:
    if not samples:
        return None
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(int(q * len(ordered)), len(ordered) - 1)], 1)

    return {
        "count": len(ordered),
        "mean": round(statistics.fmean(ordered), 1),
        "p50": at(0.5),
        "p90": at(0.9),
        "p99": at(0.99),
        "max": round(ordered[-1], 1),
    }


def log_files(paths: Iterable[Path], default_dir: Path) -> list[Path]:
    """The files to read: the given files, the JSONL files in given folders, or the default."""
    chosen = list(paths) or [default_dir]
    files: list[Path] = []
    for path in chosen:
        if path.is_dir():
            files += sorted(path.glob("responses-*.jsonl"))
        else:
            files.append(path)
    return files


def _records(path: Path, summary: LogSummary) -> Iterator[tuple[Outcome, str, float | None]]:
    fallback_day = path.stem.removeprefix("responses-")
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                summary.skipped_lines += 1
                continue
            outcome = Outcome.from_json(record) if isinstance(record, dict) else None
            if outcome is None:  # valid JSON, but not a response-log line
                summary.skipped_lines += 1
                continue
            when = outcome.message_time
            day = when[:10] if when is not None and len(when) >= 10 else fallback_day
            first = record.get("first_part_ms")  # written by streamed replies, when they are
            first_part = float(first) if isinstance(first, int | float) else None
            yield outcome, day, first_part


def summarise(files: Iterable[Path]) -> LogSummary:
    """Read every file; a missing file raises FileNotFoundError naming it."""
    summary = LogSummary()
    for path in files:
        summary.files.append(str(path))
        for record, day, first_part in _records(path, summary):
            summary.add(record, day, first_part)
    return summary


def render_text(data: dict[str, Any]) -> str:
    """The summary as aligned plain text."""
    out = [
        f"{data['records']} records in {len(data['files'])} file(s); "
        f"{data['answered']} answered; {data['skipped_lines']} unreadable lines skipped",
    ]

    def table(title: str, counts: dict[str, Any]) -> None:
        out.append(f"\n{title}")
        if not counts:
            out.append("  (none)")
        total = sum(counts.values()) or 1
        rows = [
            (key, f"{value:>7}", f"{100 * value / total:5.1f}%") for key, value in counts.items()
        ]
        out.extend("  " + line for line in console.table(rows, right=(1, 2)))

    table("decisions", data["decisions"])
    table("triggers", data["triggers"])
    table("top users", data["top_users"])
    table("answered by", data["providers"])
    out.append("\nlatency (ms)")
    for name, p in data["latency_ms"].items():
        if p is None:
            out.append(f"  {name}: no samples")
        else:
            out.append(
                f"  {name}: p50 {p['p50']}, p90 {p['p90']}, p99 {p['p99']}, max {p['max']} "
                f"({p['count']} samples)"
            )
    out.extend(_engagement_text(data["engagement"]))
    out.append("\nper day               records  answered  prompt tok  reply tok   cost USD")
    for day, t in data["days"].items():
        out.append(
            f"  {day:<18} {t['records']:>8} {t['answered']:>9} {t['prompt_tokens']:>11} "
            f"{t['completion_tokens']:>10} {t['cost_usd']:>10.4f}"
        )
    return "\n".join(out)


def _engagement_text(engagement: dict[str, Any]) -> list[str]:
    """conv14: the channel plan's figures as text lines."""
    per_hour = engagement["replies_per_hour"]
    share = engagement["share_max"]
    first = engagement["first_part_ms"]
    out = [
        "\nengagement",
        f"  replies per hour: mean {per_hour['mean']}, max {per_hour['max']}",
        f"  share of chat: max {'–' if share is None else f'{100 * share:.1f}%'}",
        "  time to first part: "
        + ("no samples" if first is None else f"p50 {first['p50']} ms, p90 {first['p90']} ms"),
        "  hour (UTC)       replies   share  activations; refusals",
    ]
    for hour, h in engagement["hours"].items():
        shown = "–" if h["share"] is None else f"{100 * h['share']:.1f}%"
        act = ", ".join(f"{k} {v}" for k, v in h["activations"].items()) or "–"
        refused = ", ".join(f"{k} {v}" for k, v in h["refusals"].items()) or "–"
        out.append(f"  {hour:<16} {h['replies']:>7} {shown:>7}  {act}; {refused}")
    return out


# --- HTML report -------------------------------------------------------------------------------

_COLORS = ("#58a6ff", "#3fb950", "#d29922", "#a371f7", "#f85149", "#8b949e")


def _bars(title: str, counts: dict[str, float], unit: str = "") -> str:
    """A horizontal bar chart as inline SVG, every label escaped."""
    if not counts:
        return f"<h2>{html.escape(title)}</h2><p class=muted>no data</p>"
    rows = list(counts.items())
    top = max(rows, key=lambda kv: kv[1])[1] or 1
    height = 24 * len(rows) + 10
    parts = [f'<svg width="760" height="{height}" role="img" aria-label="{html.escape(title)}">']
    for i, (label, value) in enumerate(rows):
        y = 5 + 24 * i
        width = max(1.0, 480 * value / top)
        color = _COLORS[i % len(_COLORS)]
        parts.append(
            f'<text x="0" y="{y + 15}">{html.escape(str(label)[:40])}</text>'
            f'<rect x="200" y="{y + 3}" width="{width:.1f}" height="16" fill="{color}"/>'
            f'<text x="{205 + width:.1f}" y="{y + 15}">{value:g}{html.escape(unit)}</text>'
        )
    parts.append("</svg>")
    return f"<h2>{html.escape(title)}</h2>" + "".join(parts)


def _engagement_bars(engagement: dict[str, Any]) -> list[str]:
    """conv14: replies, share, activations and refusals per hour; time to first part."""
    hours = engagement["hours"]
    first = engagement["first_part_ms"] or {}
    return [
        _bars("Replies per hour", {hour: h["replies"] for hour, h in hours.items()}),
        _bars(
            "Share of chat per hour (highest)",
            {
                hour: round(100 * h["share"], 2)
                for hour, h in hours.items()
                if h["share"] is not None
            },
            " %",
        ),
        _bars(
            "Activations per trigger per hour",
            {
                f"{hour} {name}": n
                for hour, h in hours.items()
                for name, n in h["activations"].items()
            },
        ),
        _bars(
            "Rate-limit refusals by kind per hour",
            {f"{hour} {name}": n for hour, h in hours.items() for name, n in h["refusals"].items()},
        ),
        _bars(
            "Time to first part (ms)",
            {k: first[k] for k in ("p50", "p90", "p99", "max") if k in first},
            " ms",
        ),
    ]


def render_html(data: dict[str, Any]) -> str:
    """One self-contained HTML page (inline SVG and CSS, no script)."""
    days = data["days"]
    latency = data["latency_ms"]["reply_total"] or {}
    sections = [
        _bars("Decisions", data["decisions"]),
        _bars("Triggers", data["triggers"]),
        _bars("Answered by", data["providers"]),
        _bars("Top users", data["top_users"]),
        _bars("Replies per day", {day: t["answered"] for day, t in days.items()}),
        _bars(
            "Tokens per day",
            {d: t["prompt_tokens"] + t["completion_tokens"] for d, t in days.items()},
        ),
        _bars("Cost per day", {day: round(t["cost_usd"], 4) for day, t in days.items()}, " USD"),
        *_engagement_bars(data["engagement"]),
        _bars(
            "Reply latency (ms)",
            {k: latency[k] for k in ("p50", "p90", "p99", "max") if k in latency},
            " ms",
        ),
    ]
    summary = (
        f"{data['records']} records, {data['answered']} answered, "
        f"{data['skipped_lines']} unreadable lines skipped"
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<title>kryten-llm response logs</title><style>"
        "body{font-family:system-ui,sans-serif;margin:24px;background:#fff;color:#222}"
        "h1{font-size:20px}h2{font-size:15px;margin:22px 0 6px}svg text{font-size:12px}"
        ".muted{color:#777}</style></head><body>"
        f"<h1>kryten-llm response logs</h1><p class=muted>{html.escape(summary)}</p>"
        + "".join(sections)
        + "</body></html>\n"
    )
