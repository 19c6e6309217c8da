"""Reply latency with the dashboard open and 1,000 chat events per second flowing.

The bot runs as its own process with its web server on; this process opens three dashboard
streams (``/api/stream``, one snapshot a second each), scrapes ``/metrics`` once a second,
has a second process publish a flood of ordinary chat at 1,000 events/s, and meanwhile measures
mention -> ``say`` latency one question at a time. Targets are the core service's: p50 <= 2 ms,
p99 <= 10 ms.

    python bench/bench_dashboard.py [N]
    BENCH_STREAMS=0 BENCH_FLOOD_RATE=10 BENCH_PAUSE=0.005 python bench/bench_dashboard.py 1000
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from _harness import (
    SUBJECT,
    Bot,
    NatsServer,
    bench_config,
    chat_bytes,
    connect,
    machine,
    wait_ready,
)

from kryten_llm.bus.settle import settle
from tests.natsserver import free_port

FLOOD_PER_SECOND = int(os.environ.get("BENCH_FLOOD_RATE", "1000"))
FLOOD_SECONDS = float(os.environ.get("BENCH_FLOOD_SECONDS", "12"))
# Seconds between questions. 0 measures exactly as bench_latency.py does (the core target);
# a pause lets every process fall asleep between questions, which adds this VM's wake-up time.
PAUSE = float(os.environ.get("BENCH_PAUSE", "0"))
STREAMS = int(os.environ.get("BENCH_STREAMS", "3"))
LINES = ["lol", "this movie is so bad", "who picked this one?", "brb popcorn", "Plan 9 &amp; more"]


async def flood(url: str, seconds: float) -> int:
    """Ordinary chat at FLOOD_PER_SECOND, in bursts of 10 every 10 ms, on a fixed schedule."""
    nc = await connect(url)
    start = time.perf_counter()
    count = 0
    while time.perf_counter() - start < seconds:
        for _ in range(10):
            await nc.publish(SUBJECT, chat_bytes(f"viewer{count % 300}", LINES[count % 5]))
            count += 1
        delay = start + count / FLOOD_PER_SECOND - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    await nc.close()
    return count


def flood_process(url: str, seconds: float) -> subprocess.Popen[bytes]:
    """The flood in a process of its own, so that it does not delay the measuring loop."""
    code = (
        "import asyncio, sys; sys.argv = sys.argv[:1]; import bench_dashboard as b; "
        f"print(asyncio.run(b.flood({url!r}, {seconds})))"
    )
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)


async def watch(session: aiohttp.ClientSession, url: str, received: list[int], i: int) -> None:
    async with session.get(url) as response:
        async for line in response.content:
            if line.startswith(b"data: "):
                received[i] += 1


async def scrape(
    session: aiohttp.ClientSession, url: str, stop: asyncio.Event, times: list[float]
) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        async with session.get(url) as response:
            await response.read()
        times.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(1.0)


async def main(count: int, warmup: int = 100) -> None:
    server = NatsServer()
    server.start()
    port = free_port()
    config = bench_config(
        server.url, Path(tempfile.mkdtemp()), web={"port": port, "push_interval_seconds": 1.0}
    )
    bot = Bot(config)
    nc = await connect(server.url)
    samples: list[float] = []
    received = [0] * STREAMS
    scrapes: list[float] = []
    sent = [0]
    stop = asyncio.Event()
    try:
        await wait_ready(nc)
        sub = await nc.subscribe("kryten.robot.command")
        await settle(nc)
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{port}"
            tasks = [
                asyncio.create_task(watch(session, f"{base}/api/stream", received, i))
                for i in range(STREAMS)
            ]
            tasks.append(asyncio.create_task(scrape(session, f"{base}/metrics", stop, scrapes)))
            flooder = flood_process(server.url, FLOOD_SECONDS)
            await asyncio.sleep(2)  # the flood and the streams are running
            began = time.perf_counter()
            for i in range(warmup + count):
                data = chat_bytes(f"asker{i % 200}", f"hey cynthia, question number {i}?")
                start = time.perf_counter()
                await nc.publish(SUBJECT, data)
                await sub.next_msg(5)
                if i >= warmup:
                    samples.append((time.perf_counter() - start) * 1000)
                if PAUSE:
                    await asyncio.sleep(PAUSE)
            elapsed = time.perf_counter() - began
            stop.set()
            out, _ = await asyncio.to_thread(flooder.communicate)
            sent[0] = int(out or 0)
            for task in tasks:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
    finally:
        await nc.close()
        bot.stop()
        server.close()
    samples.sort()
    q = statistics.quantiles(samples, n=100)
    print(f"machine: {machine()}")
    print(f"flood: {sent[0]} chat events at {FLOOD_PER_SECOND}/s; {STREAMS} dashboard streams")
    print(f"snapshots received per stream over {elapsed:.1f} s: {received}")
    print(f"/metrics scrapes: {len(scrapes)}, p50 {statistics.median(scrapes):.1f} ms")
    print(f"replies: {count} (after {warmup} warm-up)")
    print(f"p50: {q[49]:.2f} ms (target <= 2)")
    print(f"p90: {q[89]:.2f} ms")
    print(f"p99: {q[98]:.2f} ms (target <= 10)")
    print(f"max: {samples[-1]:.2f} ms")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 6000))
