"""(a) Ingest rate: non-triggering chat through a real nats-server into the bot process.

Publishes N distinct chatMsg events that fire no trigger (realistic lines, 50 users) as fast as
one publisher can, and measures from the first publish until the bot's own counter says it has
handled all N. Target: >= 25,000 messages/s on a 2-core machine.

    python bench/bench_ingest.py [N]
"""

from __future__ import annotations

import asyncio
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
    chat_lines,
    connect,
    machine,
    stats,
    wait_count,
    wait_ready,
)


async def main(count: int, **sections: Any) -> None:
    """Measure ingest of ``count`` lines; ``sections`` change the bench config (see
    ``bench_conversation.py``)."""
    server = NatsServer()
    server.start()
    log_dir = Path(tempfile.mkdtemp())
    bot = Bot(bench_config(server.url, log_dir, **sections))
    nc = await connect(server.url)
    try:
        await wait_ready(nc)
        base = (await stats(nc)).get("chat", 0)
        start = time.perf_counter()
        for i, line in enumerate(chat_lines(count)):
            await nc.publish(SUBJECT, line)
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
