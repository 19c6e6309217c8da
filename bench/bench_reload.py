"""Reload under load: how long a reload takes and whether any chat event is lost meanwhile.

The bot runs as its own process; this process publishes ordinary chat at a steady rate (1,000
events/s by default) and, at the same time, rewrites the config file (a trigger word's patterns
and a rate limit change each time) and asks for a reload over ``kryten.llm.command``, again and
again. Reported: the reload's round trip as the operator sees it (request to ``ok`` reply; the
bot has re-read, checked and applied the config by then), and events published vs counted by
the bot. Target: 0 lost, p99 under 100 ms.

    python bench/bench_reload.py [RELOADS] [EVENTS_PER_SECOND]
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import (
    SUBJECT,
    Bot,
    NatsServer,
    bench_config,
    chat_bytes,
    connect,
    machine,
    stats,
    wait_count,
    wait_ready,
)

TOKEN = "bench-token"


async def publish(nc: Any, rate: int, stop: asyncio.Event) -> int:
    """Ordinary chat at ``rate`` lines/s in 10 ms slices until ``stop``; returns how many."""
    sent = 0
    start = time.perf_counter()
    while not stop.is_set():
        due = int((time.perf_counter() - start) * rate)
        while sent < due:
            await nc.publish(SUBJECT, chat_bytes(f"user{sent % 300}", f"just chatting {sent}"))
            sent += 1
        await asyncio.sleep(0.01)
    await nc.flush()
    return sent


async def main(reloads: int, rate: int) -> None:
    server = NatsServer()
    server.start()
    config = bench_config(
        server.url,
        Path(tempfile.mkdtemp()),
        web={"enabled": False, "token": TOKEN},
        triggers={"words": [{"name": "snack", "patterns": ["popcorn"]}]},
    )
    bot = Bot(config)
    nc = await connect(server.url)
    times: list[float] = []
    try:
        await wait_ready(nc)
        before = (await stats(nc)).get("events", 0)
        stop = asyncio.Event()
        publisher = asyncio.create_task(publish(nc, rate, stop))
        await asyncio.sleep(1.0)  # the load is on before the first reload
        for i in range(reloads):
            config["triggers"]["words"][0]["patterns"] = [f"popcorn{i}"]
            config["ratelimit"]["user_per_hour"] = 1_000_000 - i
            bot.config_path.write_text(json.dumps(config))
            body = json.dumps({"command": "reload", "token": TOKEN}).encode()
            start = time.perf_counter()
            reply = json.loads((await nc.request("kryten.llm.command", body, timeout=10)).data)
            times.append((time.perf_counter() - start) * 1000)
            if not (reply["ok"] and reply["reload"]["changed"]):
                raise RuntimeError(f"reload {i} did not apply: {reply}")
            await asyncio.sleep(0.1)
        stop.set()
        sent = await publisher
        # Counted events include the discovery polls' own replies: count chat only.
        await wait_count(nc, "event_type:chat", sent, timeout=120)
        counted = (await stats(nc))["event_type:chat"]
    finally:
        await nc.close()
        bot.stop()
        server.close()
    times.sort()
    p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
    print(f"machine: {machine()}")
    print(f"load: {rate} chat events/s, {sent} published, events before: {before}")
    print(
        f"reload round trip over {reloads} reloads: p50 {statistics.median(times):.1f} ms, "
        f"p99 {p99:.1f} ms, max {times[-1]:.1f} ms"
    )
    print(f"chat events counted by the bot: {counted} (lost: {sent - counted})")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    asyncio.run(main(int(args[0]) if args else 100, int(args[1]) if len(args) > 1 else 1000))
