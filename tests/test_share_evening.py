"""A simulated evening of 10,000 chat lines: the bot's share of the chat stays under its
budget in every window, and every mention is still answered (real nats-server, kryten-py)."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import aiohttp
import pytest

from kryten_llm.service import Service
from tests.bridge import FakeBridge
from tests.conftest import read_log, running, settings_for, settled, undecided
from tests.natsserver import NatsServer

pytestmark = pytest.mark.nats

LINES = 10_000
WINDOW = 200
BUDGET = 0.05
MENTION_EVERY = 250  # the first at line 125: one mention in any window of 200 lines
BATCH = 10  # lines published before the bot is let catch up: replies come within 10 lines


async def caught_up(service: Service, bridge: FakeBridge, lines: int) -> None:
    """Wait until the bot took in ``lines`` lines and the echo of each of its replies, and
    decided everything: a channel where the bot answers before ten more lines are said."""
    deadline = time.monotonic() + 30
    stats = service.stats
    while not (stats["chat"] == lines + len(bridge.says()) and undecided(stats) == 0):
        assert time.monotonic() < deadline, "the bot did not catch up"
        await asyncio.sleep(0.001)


async def test_an_evening_of_ten_thousand_lines_keeps_the_bot_under_its_share(
    nats_server: NatsServer,
    bridge: FakeBridge,
    tmp_path: Path,
    session: aiohttp.ClientSession,
) -> None:
    """Mentions every 250 lines, trigger words every 37, joining in at a high base chance:
    in every window of 200 lines the bot's lines stay at or under 5 %, each mention is
    answered, and the share shows on /metrics and on the dashboard."""
    settings = settings_for(
        nats_server.url,
        tmp_path,
        ratelimit={"global_per_minute": 100_000, "global_per_hour": 100_000},
        triggers={"words": [{"name": "popcorn", "patterns": ["popcorn"], "probability": 1.0}]},
        participation={
            "enabled": True,
            "base_probability": 0.5,
            "max_per_window": 100_000,
            "share_budget": BUDGET,
            "share_window_messages": WINDOW,
            "share_headroom": 0.2,
        },
    )
    script = random.Random(2026)
    # The channel as the bridge sees it, in order: True for the bot's lines.
    published: list[float] = []
    mentions = 0
    async with running(Service(settings, rng=random.Random(11))) as service:
        for i in range(LINES):
            if i % MENTION_EVERY == MENTION_EVERY // 2:
                text, user = f"cynthia, what about film {i}?", f"fan{i}"
                mentions += 1
            elif i % 37 == 0:
                text, user = "who brought the popcorn", f"user{i % 40}"
            else:
                text = script.choice(["lol", "this scene!", "anyone seen this?", "nice", "wow"])
                user = f"user{i % 40}"
            published.append(time.monotonic())
            await bridge.chat(user, f"{text} #{i}")
            if i % BATCH == BATCH - 1:
                await caught_up(service, bridge, i + 1)
        await settled(service, bridge, chats=LINES + len(bridge.says()))
        assert service.surface is not None
        assert service.surface.web is not None
        url = f"http://127.0.0.1:{service.surface.web.port}/metrics"
        async with session.get(url) as response:
            metrics = await response.text()
        dashboard = service.surface.state()["engagement"]
    # The share is on /metrics and on the dashboard, the same figure.
    (share_line,) = [m for m in metrics.splitlines() if m.startswith("kryten_llm_chat_share{")]
    shown = float(share_line.rsplit(" ", 1)[1])
    assert 0 < shown <= BUDGET
    assert dashboard["share"] == {"cytu.be/mychannel": round(shown, 4)}
    assert "kryten_llm_chat_share_budget 0.05" in metrics
    assert 'kryten_llm_refusals_total{limit="share_budget"}' in metrics
    assert sum(h["replies"] for h in dashboard["hours"]) > 0
    said = sorted(c.received_at for c in bridge.commands if c.body["command"] == "say")
    channel = sorted([(t, False) for t in published] + [(t, True) for t in said])
    worst = 0.0
    bot_in_window = 0
    for n, (_, from_bot) in enumerate(channel):
        bot_in_window += from_bot
        if n >= WINDOW:
            bot_in_window -= channel[n - WINDOW][1]
        worst = max(worst, bot_in_window / min(n + 1, WINDOW))
    assert worst <= BUDGET, f"the bot took {worst:.1%} of a window"
    records = read_log(tmp_path)
    asked = [r for r in records if r["trigger"]["kind"] == "mention"]
    assert len(asked) == mentions == LINES // MENTION_EVERY
    assert all(r["reason"] == "answered" for r in asked)
    unasked = [r for r in records if r["trigger"]["kind"] in ("join", "word")]
    answered = [r for r in unasked if r["reason"] == "answered"]
    refused = [r for r in unasked if r.get("limit") == "share_budget"]
    # The bot did join in and fill its room, and gave way when the room was used up.
    assert len(said) > 0.02 * LINES
    assert answered
    assert refused
    assert {r["trigger"]["kind"] for r in answered} == {"join", "word"}
    assert all(0 <= r["chat_share"] <= BUDGET for r in records)
