"""(c) Memory: the bot's RSS when idle and while 1,000,000 messages go through it.

The stream mixes non-triggering chat from 5,000 distinct users with joins, leaves and media
changes, and ~1% mentions (answered by the instant scripted provider, so the response log,
history and rate-limit state all see traffic). RSS is sampled from /proc after each quarter;
it must level off rather than grow with the message count.

    python bench/bench_memory.py [N]
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from _harness import (
    CHANNEL,
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


def event(name: str, payload: object) -> tuple[str, bytes]:
    subject = f"kryten.events.cytube.mychannel.{name.lower()}"
    return subject, json.dumps(
        {
            "event_name": name,
            "payload": payload,
            "channel": CHANNEL,
            "domain": "cytu.be",
            "timestamp": datetime.now(UTC).isoformat(),
            "correlation_id": str(uuid.uuid4()),
        }
    ).encode()


async def main(count: int) -> None:
    server = NatsServer()
    server.start()
    bot = Bot(bench_config(server.url, Path(tempfile.mkdtemp())))
    nc = await connect(server.url)
    samples: list[tuple[int, float]] = []
    try:
        await wait_ready(nc)
        await asyncio.sleep(1.0)
        samples.append((0, bot.rss_mb()))
        quarter = count // 4
        sent = 0
        base = (await stats(nc)).get("events", 0)
        start = time.perf_counter()
        for _ in range(4):
            for i in range(quarter):
                n = sent + i
                user = f"user{n % 5000}"
                if n % 100 == 0:
                    await nc.publish(SUBJECT, chat_bytes(user, f"cynthia, thoughts on take {n}?"))
                elif n % 37 == 0:
                    s, d = event(
                        "addUser", {"name": user, "rank": n % 3, "profile": {}, "meta": {}}
                    )
                    await nc.publish(s, d)
                elif n % 41 == 0:
                    s, d = event("userLeave", {"name": user})
                    await nc.publish(s, d)
                elif n % 997 == 0:
                    s, d = event(
                        "changeMedia",
                        {
                            "id": f"v{n}",
                            "title": f"Video {n}",
                            "seconds": 90,
                            "duration": "01:30",
                            "type": "yt",
                        },
                    )
                    await nc.publish(s, d)
                else:
                    await nc.publish(
                        SUBJECT, chat_bytes(user, f"just chatting, line {n} " + "x" * (n % 120))
                    )
                if i % 2000 == 1999:
                    await nc.flush()
                if i % 50_000 == 49_999:  # let the bot catch up: measure memory, not backlog
                    await wait_count(nc, "events", base + sent + i + 1)
            sent += quarter
            await nc.flush()
            await wait_count(nc, "events", base + sent)
            samples.append((sent, bot.rss_mb()))
        elapsed = time.perf_counter() - start
        final = await stats(nc)
    finally:
        await nc.close()
        bot.stop()
        server.close()
    print(f"machine: {machine()}")
    print(f"messages: {sent} in {elapsed:.1f} s; replies: {final.get('decision_answered', 0)}")
    for n, rss in samples:
        print(f"RSS after {n:>9,} messages: {rss:6.1f} MB")
    growth = samples[-1][1] - samples[1][1]
    print(f"growth over the last three quarters: {growth:+.1f} MB")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000))
