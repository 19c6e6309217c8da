"""(f) Fuzzed traffic: hostile payloads interleaved with real mentions, into the bot process.

Publishes N fuzzed envelopes (the strategies of ``tests/fuzzwire.py``: lone surrogates,
NaN/Infinity/1e400/400-digit numbers, deep nesting, wrong types, huge strings, every event type)
through a real nats-server, with a normal mention every N/M payloads, into the bot run as an
operator runs it. Then it reads the bot's counters and its JSON log and prints:

- exceptions outside the counted malformed path: ``event_handling_failed``, ``reply_failed``,
  ``nats_error`` lines, any traceback in the log, and the ``events_failed`` counter (must be 0);
- mentions answered (must be all M);
- malformed payloads counted, and log lines for them (one each, no traceback);
- RSS of the bot before and after.

Fuzzed ``cooldown``/``noflood`` events are left out: a legitimate 60 s cooldown would delay the
mentions past their deadline, which is CyTube's flood control working, not a failure.

    python bench/bench_fuzz.py [N] [M]
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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
from hypothesis import HealthCheck, Phase, given, settings

from kryten_llm.bus.events import CooldownEvent, NoFloodEvent, parse_event
from kryten_llm.errors import MalformedEvent
from tests.fuzzwire import messages

DISTINCT = 3_000  # hypothesis draws this many; they are cycled up to N
FAILURES = ("event_handling_failed", "reply_failed", "nats_error")


def fuzzed(count: int) -> list[tuple[str, bytes]]:
    """``count`` distinct (token, body) pairs drawn by hypothesis, without flood-control events."""
    drawn: list[tuple[str, bytes]] = []

    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(messages)
    def collect(message: tuple[str, bytes]) -> None:
        try:
            event = parse_event("s", message[1])
        except MalformedEvent:
            event = None
        if not isinstance(event, CooldownEvent | NoFloodEvent):
            drawn.append(message)

    collect()
    return drawn


class LoggedBot(Bot):
    """The bot in its own process, its JSON log kept in a file to count what went wrong."""

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        self.log_path = workdir / "bot.log"
        super().__init__(config, log_path=self.log_path)

    def log_summary(self) -> dict[str, int]:
        summary = dict.fromkeys((*FAILURES, "event_malformed", "traceback", "unparsed"), 0)
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                summary["unparsed"] += 1
                summary["traceback"] += "Traceback" in line
                continue
            event = entry.get("event")
            if event in summary:
                summary[event] += 1
            summary["traceback"] += "exception" in entry
        return summary


async def main(count: int, mentions: int) -> None:
    started = time.perf_counter()
    pool = fuzzed(DISTINCT)
    generated = time.perf_counter()
    server = NatsServer()
    server.start()
    workdir = Path(tempfile.mkdtemp(prefix="kryten-llm-bench-fuzz-"))
    config = bench_config(
        server.url,
        workdir / "logs",
        processing={"queue_size": 10_000},
        logging={"level": "WARNING", "format": "json", "response_log_dir": str(workdir / "logs")},
    )
    bot = LoggedBot(config, workdir)
    nc = await connect(server.url)
    answered: set[int] = set()

    async def on_command(msg: Any) -> None:
        text = json.loads(msg.data).get("args", {}).get("message", "")
        if "zq" in text:
            for word in text.replace(",", " ").split():
                if word.startswith("zq") and word[2:].isdigit():
                    answered.add(int(word[2:]))

    try:
        await nc.subscribe("kryten.robot.command", cb=on_command)
        await wait_ready(nc)
        base = (await stats(nc)).get("events", 0)
        rss_before = bot.rss_mb()
        every = max(count // mentions, 1)
        sent_mentions = 0
        publish_start = time.perf_counter()
        for i in range(count):
            token, body = pool[i % len(pool)]
            await nc.publish(f"kryten.events.cytube.{CHANNEL.lower()}.{token}", body)
            if i % every == every - 1 and sent_mentions < mentions:
                await nc.publish(
                    SUBJECT,
                    chat_bytes(f"user{sent_mentions % 50}", f"cynthia zq{sent_mentions} ok?"),
                )
                sent_mentions += 1
            if i % 2000 == 1999:
                await nc.flush()
        await nc.flush()
        published = time.perf_counter()
        await wait_count(nc, "events", base + count + sent_mentions)
        deadline = time.monotonic() + 120
        while len(answered) < sent_mentions and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        final = await stats(nc)
        rss_after = bot.rss_mb()
    finally:
        await nc.close()
        code = bot.stop()
        server.close()
    logged = bot.log_summary()
    escaped = sum(logged[name] for name in FAILURES) + logged["traceback"]
    escaped += final.get("events_failed", 0)
    events = final.get("events", 0) - base
    print(f"machine: {machine()}")
    print(f"fuzzed payloads: {count} ({len(pool)} distinct from hypothesis, cycled)")
    print(f"payload generation: {generated - started:.1f} s")
    print(f"mentions interleaved: {sent_mentions}")
    print(f"publish time: {published - publish_start:.2f} s")
    print(f"events counted by the bot: {events} (expected {count + sent_mentions})")
    print(f"malformed counted: {final.get('events_malformed', 0)}")
    print(f"malformed log lines: {logged['event_malformed']}")
    print(f"exceptions outside the counted malformed path: {escaped} (must be 0)")
    print(f"  log: {logged}")
    print(f"  events_failed: {final.get('events_failed', 0)}")
    print(f"  internal errors: {final.get('decision_internal_error', 0)}")
    print(f"mentions answered: {len(answered)} of {sent_mentions} (must be all)")
    print(f"RSS before: {rss_before:.1f} MB, after: {rss_after:.1f} MB")
    print(f"bot exit code: {code}")


if __name__ == "__main__":
    asyncio.run(
        main(
            int(sys.argv[1]) if len(sys.argv) > 1 else 100_000,
            int(sys.argv[2]) if len(sys.argv) > 2 else 1_000,
        )
    )
