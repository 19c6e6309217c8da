"""Memory (issue 14): what it adds to the NATS callback, and how fast the store loads and writes.

The callback must never wait on disk: per message aimed at the bot it runs
``Memory.take`` (regexes) and ``Memory.recall`` (a dict lookup), with the notes of ``USERS``
users (20 each) held in RAM. Also measured: opening and loading that store at startup, and
notes written per second through the memory's own thread.

    python bench/bench_recall.py [USERS]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _harness import machine

from kryten_llm.bus.events import ChatEvent, Envelope
from kryten_llm.config import ChannelConfig, load_settings
from kryten_llm.logs import configure_logging
from kryten_llm.memory.live import Memory
from kryten_llm.memory.store import MemoryStore, Note, Scope, Source
from kryten_llm.pipeline.decisions import TriggerMatch
from kryten_llm.pipeline.state import ChannelState
from kryten_llm.pipeline.stats import Flags

MESSAGES = [
    "cynthia, what should we watch after this one?",
    "cynthia remember that I like kung fu films {n}",
    "rothbot is this the director's cut?",
]


def chat(username: str, text: str) -> ChatEvent:
    envelope = Envelope("chatMsg", "MyChannel", "cytu.be", "", "c")
    return ChatEvent(envelope, username, text, text, 0)


async def main(users: int) -> None:
    configure_logging("WARNING", "json")  # the bot logs each note at info: not measured here
    folder = Path(tempfile.mkdtemp(prefix="bench-recall-"))
    db = folder / "memory.db"
    settings = load_settings(None, memory={"enabled": True, "path": str(db), "providers": ["echo"]})
    channel = ChannelConfig(domain="cytu.be", channel="MyChannel")
    store = MemoryStore.open(db)
    now = time.time()
    start = time.perf_counter()
    for u in range(users):
        for n in range(20):
            note = Note("cytu.be", "mychannel", Scope.USER, f"user{u}", f"user{u}",
                        f"I like film number {n} a lot", Source.SAID, now - n)  # fmt: skip
            store.add(note, keep=20)
    direct = users * 20 / (time.perf_counter() - start)
    store.close()
    start = time.perf_counter()
    memory = Memory.open(settings.memory, sender=None, flags=Flags())
    loaded_ms = (time.perf_counter() - start) * 1000
    state = ChannelState(30)
    trigger = TriggerMatch("mention", "mention")
    samples = []
    count = 20_000
    for i in range(count):
        user = f"user{i % users}"
        event = chat(user, MESSAGES[i % 3].format(n=i))
        t0 = time.perf_counter()
        memory.take(channel, event, rank=1, settings=settings, state=state)
        memory.recall(channel, user, trigger, settings)
        samples.append((time.perf_counter() - t0) * 1e6)
    written = count // 3
    t0 = time.perf_counter()
    await memory.settle()
    drained = time.perf_counter() - t0
    await memory.close()
    samples.sort()
    print(f"machine: {machine()}; {users} users x 20 notes ({users * 20} notes)")
    print(f"store.add directly (one transaction each): {direct:,.0f} notes/s")
    print(f"startup open + load: {loaded_ms:.1f} ms for {memory.size} notes held")
    print(
        f"callback cost of take+recall per message: median {statistics.median(samples):.1f} us, "
        f"p99 {samples[int(len(samples) * 0.99)]:.1f} us, max {samples[-1]:.0f} us"
    )
    print(f"{written} remembered notes written in the background, drained {drained:.2f} s after")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
