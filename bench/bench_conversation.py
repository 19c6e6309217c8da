"""Ingest rate with the conversation on: bench_ingest.py's stream, participation enabled.

The same N non-triggering lines as ``bench_ingest.py``, with joining in, follow-ups and the
share budget on (base chance 0: no line is joined, so every line pays for the share window,
the follow-up lookup and the cap check, and nothing else changes). Compare with
``bench_ingest.py`` for the cost of the conversation in the NATS callback.

    python bench/bench_conversation.py [N]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

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

LINES = [
    "lol this movie is so bad it is good",
    "anyone else hear that weird noise at 12:30?",
    "brb getting more coffee",
    "the acting in this scene &lt;3",
    "who directed this again",
    "...lol",
    "this soundtrack slaps",
    "did the camera guy fall asleep",
]


async def main(count: int) -> None:
    server = NatsServer()
    server.start()
    log_dir = Path(tempfile.mkdtemp())
    bot = Bot(
        bench_config(
            server.url,
            log_dir,
            participation={"enabled": True, "base_probability": 0.0},
            followups={"enabled": True},
        )
    )
    nc = await connect(server.url)
    try:
        await wait_ready(nc)
        base = (await stats(nc)).get("chat", 0)
        payloads = [chat_bytes(f"user{i % 50}", LINES[i % len(LINES)]) for i in range(1000)]
        start = time.perf_counter()
        for i in range(count):
            await nc.publish(SUBJECT, payloads[i % 1000])
            if i % 5000 == 4999:
                await nc.flush()
        await nc.flush()
        published = time.perf_counter()
        await wait_count(nc, "chat", base + count)
        done = time.perf_counter()
        final = await stats(nc)
    finally:
        await nc.close()
        bot.stop()
        server.close()
    rate = count / (done - start)
    print(f"machine: {machine()}")
    print(f"messages: {count}")
    print(f"publish time: {published - start:.2f} s")
    print(f"ingest rate: {rate:,.0f} messages/s (target >= 25,000)")
    print(f"triggered: {final.get('triggered', 0)}, malformed: {final.get('events_malformed', 0)}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000))
