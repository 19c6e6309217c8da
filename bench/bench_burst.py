"""(i) Burst: N chat lines published as fast as nats-py can; does any line get lost?

One publisher sends N - 1 ordinary chat lines (no trigger, each line distinct: see
:func:`chat_lines`) and then one mention, back to back with no pause, into a real nats-server
started with its monitoring port. The receiver is the
bot (its own process, as an operator runs it) or, with ``--bare``, a bare nats-py client that
only ``json.loads`` each event and says something when it sees the mention; ``--both`` runs the
two, each against a fresh server, and prints the ratios.

Reported per receiver: lines published and publish rate, lines the receiver counted (the bot's
``events`` counter), the server's ``slow_consumers`` (``/varz``: a client whose socket backlog
passed ``max_pending``, 64 MB by default, is cut off and everything queued for it is lost), the
final mention's latency (its publish -> the ``say``), the receiver's CPU time per line, and its
ingest rate: lines per second from the first publish until the ``say`` for the final mention
(which the receiver handles after every line before it). Targets: 0 lines lost, 0 slow
consumers, the mention answered; with ``--both``, ingest of the bot at least 0.8x the bare
client's (the ``ingest bot / bare`` line).

    python bench/bench_burst.py [N] [--bare | --both]

Environment: BENCH_MAX_PENDING=<bytes> gives nats-server a smaller max_pending (4000000 makes
a starving receiver visible with 200,000 lines); BENCH_TRACE=1 prints the server's backlog per
client while it is over 1 MB; BENCH_BOTLOG=<file> keeps the bot's output.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nats
from _harness import (
    SUBJECT,
    Bot,
    bench_config,
    chat_bytes,
    chat_lines,
    connect,
    cpu_seconds,
    machine,
    stats,
    wait_ready,
)

from kryten_llm.bus.settle import settle
from tests.natsserver import ConfiguredNatsServer

MENTION = "hey cynthia, are you still with us?"
COMMANDS = "kryten.robot.command"
BARE_COUNT = "bench.bare.count"
# nats-server's per-client max_pending (bytes); 0 keeps its default (64 MB).
MAX_PENDING = int(os.environ.get("BENCH_MAX_PENDING", "0"))
BOT_LOG = os.environ.get("BENCH_BOTLOG")  # a file for the bot's output (default: none)


async def sample_pending(server: ConfiguredNatsServer, peak: dict[str, int]) -> None:
    """Record the largest outbound backlog the server holds for any client (``/connz``)."""
    while True:
        connz = await asyncio.to_thread(server.connz)
        for conn in connz.get("connections", []):
            peak["bytes"] = max(peak["bytes"], conn.get("pending_bytes", 0))
            if os.environ.get("BENCH_TRACE") and conn.get("pending_bytes", 0) > 1e6:
                print(time.monotonic(), conn["name"], conn["pending_bytes"], conn["out_msgs"])
        await asyncio.sleep(0.02)


async def bare_child(url: str) -> None:
    """The bare receiver: json.loads every event, say something on the mention, count."""
    nc = await nats.connect(url)
    count = 0
    done = asyncio.Event()

    async def on_event(msg: Any) -> None:
        nonlocal count
        count += 1
        event = json.loads(msg.data)
        if "cynthia" in event["payload"]["msg"]:
            await nc.publish(COMMANDS, b'{"command":"say"}')

    async def on_count(msg: Any) -> None:
        await msg.respond(json.dumps({"events": count}).encode())
        if msg.data == b"stop":
            done.set()

    await nc.subscribe(SUBJECT, cb=on_event)
    await nc.subscribe(BARE_COUNT, cb=on_count)
    await nc.flush()
    print("ready", flush=True)
    await done.wait()
    await nc.close()


class Receiver:
    """The bot or the bare client, in its own process, with a way to read its counter."""

    def __init__(self, kind: str, server: ConfiguredNatsServer) -> None:
        self.kind = kind
        if kind == "bot":
            self._bot: Bot | None = Bot(
                bench_config(server.url, Path(tempfile.mkdtemp())),
                log_path=Path(BOT_LOG) if BOT_LOG else None,
            )
            self.pid = self._bot.process.pid
            self._proc: subprocess.Popen[bytes] | None = None
        else:
            self._bot = None
            self._proc = subprocess.Popen(
                [sys.executable, __file__, "--bare-child", server.url], stdout=subprocess.PIPE
            )
            assert self._proc.stdout is not None
            self._proc.stdout.readline()  # "ready"
            self.pid = self._proc.pid

    async def ready(self, nc: Any) -> None:
        if self._bot is not None:
            await wait_ready(nc)

    async def events(self, nc: Any) -> int:
        if self._bot is not None:
            return (await stats(nc, 10.0)).get("events", 0)
        reply = await nc.request(BARE_COUNT, b"", timeout=10.0)
        result: int = json.loads(reply.data)["events"]
        return result

    async def stop(self, nc: Any) -> None:
        if self._bot is not None:
            self._bot.stop()
        elif self._proc is not None:
            await nc.request(BARE_COUNT, b"stop", timeout=10.0)
            self._proc.wait(20)


async def run(kind: str, count: int) -> dict[str, Any]:
    server = ConfiguredNatsServer(config=f"max_pending: {MAX_PENDING}" if MAX_PENDING else "")
    server.start()
    receiver = Receiver(kind, server)
    nc = await connect(server.url)
    try:
        await receiver.ready(nc)
        says = await nc.subscribe(COMMANDS)
        await settle(nc)
        base = await receiver.events(nc)
        mention = chat_bytes("asker", MENTION)
        cpu_before = cpu_seconds(receiver.pid)
        peak = {"bytes": 0}
        sampler = asyncio.create_task(sample_pending(server, peak))
        start = time.perf_counter()
        for line in chat_lines(count - 1):
            await nc.publish(SUBJECT, line)
        await nc.publish(SUBJECT, mention)
        asked = time.perf_counter()
        await nc.flush(60)
        published = time.perf_counter()
        drained: float | None = None
        try:
            await says.next_msg(120)
            drained = time.perf_counter()
            answered: float | None = (drained - asked) * 1000
        except nats.errors.TimeoutError:
            answered = None
        # Lines lost never arrive: wait until the counter reaches the total or stops moving.
        seen, still_since = -1, time.monotonic()
        while True:
            now_seen = await receiver.events(nc) - base
            if now_seen >= count:
                seen = now_seen
                break
            if now_seen != seen:
                seen, still_since = now_seen, time.monotonic()
            elif time.monotonic() - still_since > 3.0:
                break
            await asyncio.sleep(0.2)
        cpu = cpu_seconds(receiver.pid) - cpu_before
        sampler.cancel()
        varz = server.varz()
        await receiver.stop(nc)
    finally:
        await nc.close()
        server.close()
    return {
        "kind": kind,
        "published": count,
        "publish_rate": count / (published - start),
        "seen": seen,
        "lost": count - seen,
        "slow_consumers": varz.get("slow_consumers", 0),
        "mention_ms": answered,
        "peak_pending_mb": peak["bytes"] / 1e6,
        "cpu_us_per_line": cpu / max(seen, 1) * 1e6,
        "ingest_rate": count / (drained - start) if drained is not None else None,
    }


def show(result: dict[str, Any]) -> None:
    mention = result["mention_ms"]
    print(f"[{result['kind']}]")
    print(f"  lines published: {result['published']:,} ({result['publish_rate']:,.0f} lines/s)")
    print(f"  lines counted:   {result['seen']:,} (lost {result['lost']:,}; target 0)")
    print(f"  slow consumers:  {result['slow_consumers']} (target 0)")
    peak = result["peak_pending_mb"]
    limit = MAX_PENDING / 1e6 or 67.1
    print(f"  server backlog:  peak {peak:.1f} MB for one client (cut off at {limit:.1f})")
    print(
        "  final mention:   "
        + (f"answered after {mention:,.1f} ms" if mention is not None else "NOT answered")
    )
    print(f"  receiver CPU:    {result['cpu_us_per_line']:.1f} us/line")
    rate = result["ingest_rate"]
    print("  ingest:          " + (f"{rate:,.0f} lines/s" if rate else "n/a (no answer)"))


async def main(count: int, kinds: list[str]) -> None:
    print(f"machine: {machine()}")
    results = []
    for kind in kinds:
        results.append(await run(kind, count))
        show(results[-1])
    if len(results) == 2:
        bot, bare = results
        print(
            f"bot / bare: lines counted {bot['seen'] / max(bare['seen'], 1):.3f}, "
            f"CPU per line {bot['cpu_us_per_line'] / max(bare['cpu_us_per_line'], 1e-9):.2f}x"
        )
        if bot["ingest_rate"] and bare["ingest_rate"]:
            print(
                f"ingest bot / bare: {bot['ingest_rate'] / bare['ingest_rate']:.2f} "
                f"({bot['ingest_rate']:,.0f} / {bare['ingest_rate']:,.0f} lines/s; target >= 0.8)"
            )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--bare-child"]:
        asyncio.run(bare_child(sys.argv[2]))
        sys.exit(0)
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    both = "--both" in sys.argv
    chosen = ["bot", "bare"] if both else ["bare"] if "--bare" in sys.argv else ["bot"]
    asyncio.run(main(int(args[0]) if args else 500_000, chosen))
