"""(b) Reply latency: chat event published -> ``say`` command received, with an instant LLM.

The bot runs as its own process with the scripted provider (no latency), no pacing and
generous limits; this process plays the bridge: it publishes a mention, waits for the ``say``
on kryten.robot.command, and repeats. Target (issue 18, with the defaults: cluster on, claim
and shared limits in JetStream KV): p50 <= 1 ms, p99 <= 2 ms.

    python bench/bench_latency.py [N] [--no-web] [--alone | --local-limits | --peer]

It also prints the CPU time the bot and the nats-server spent per reply (user + system, from
``/proc``): steadier than the latency on a shared machine, where the load moves the tails.

``--peer`` keeps a second (made-up) instance in the registry, so the bot is not alone: its claim
and its rate-limit hit then take two round trips instead of one (see README, "Running several
instances").
"""

from __future__ import annotations

import asyncio
import statistics
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
    cpu_seconds,
    machine,
    wait_ready,
)
from nats.aio.client import Client as NATS

from kryten_llm.bus.settle import settle

EXTRA: dict[str, object] = {"web": {"enabled": False}} if "--no-web" in sys.argv else {}
if "--alone" in sys.argv:  # no cluster: no claim and no shared limits in JetStream KV per reply
    EXTRA["cluster"] = {"enabled": False}
if "--local-limits" in sys.argv:  # clustered (each message claimed), limits kept in-process
    EXTRA["cluster"] = {"shared_limits": False}


PEER = "--peer" in sys.argv


async def keep_peer(nc: NATS) -> None:
    """A made-up second instance in the registry (the bot refreshes its view every 2 s)."""
    while True:
        try:
            kv = await nc.jetstream().key_value("kryten_llm_instances")
            await kv.put("bench-peer", b'{"instance_id": "bench-peer"}')
        except Exception as exc:  # the bucket not created yet: the bot is still starting
            print(f"peer: {exc!r}")
        await asyncio.sleep(1.0)


async def main(count: int, warmup: int = 200) -> None:
    server = NatsServer()
    server.start()
    bot = Bot(bench_config(server.url, Path(tempfile.mkdtemp()), **EXTRA))
    nc = await connect(server.url)
    samples: list[float] = []
    peer = None
    try:
        await wait_ready(nc)
        sub = await nc.subscribe("kryten.robot.command")
        await settle(nc)
        peer = asyncio.create_task(keep_peer(nc)) if PEER else None
        if peer is not None:
            await asyncio.sleep(3)  # the bot's registry sees the peer at its next beat
        pids = {"bot": bot.process.pid, "nats-server": server.process.pid}
        for i in range(warmup + count):
            if i == warmup:
                cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
            data = chat_bytes(f"user{i % 200}", f"hey cynthia, question number {i}?")
            start = time.perf_counter()
            await nc.publish(SUBJECT, data)
            await nc.flush()
            await sub.next_msg(5)
            if i >= warmup:
                samples.append((time.perf_counter() - start) * 1000)
        cpu = {name: cpu_seconds(pid) - cpu[name] for name, pid in pids.items()}
    finally:
        if peer is not None:
            peer.cancel()
        await nc.close()
        bot.stop()
        server.close()
    samples.sort()
    q = statistics.quantiles(samples, n=100)
    print(f"machine: {machine()}")
    print(f"replies: {count} (after {warmup} warm-up)")
    print(f"p50: {q[49]:.2f} ms (target <= 1)")
    print(f"p90: {q[89]:.2f} ms")
    print(f"p99: {q[98]:.2f} ms (target <= 2)")
    print(f"max: {samples[-1]:.2f} ms")
    print("CPU per reply: " + ", ".join(f"{k} {v / count * 1e6:.0f} µs" for k, v in cpu.items()))


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    asyncio.run(main(int(args[0]) if args else 2000))
