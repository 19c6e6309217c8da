"""Streamed replies: time to the first part vs time to the whole reply, with a real model.

The bot runs as its own process with SmolLM2-135M, in-process (``local``) or behind the
llama.cpp server (``openai`` provider); this process plays the bridge: it publishes a mention,
waits until the bot has decided it (its response-log line), and repeats. Per answered mention the
bot logs ``first_part_ms`` and ``last_part_ms`` (from the message's arrival to the part handed to
the bridge); this process also times the first ``say`` it receives. ``--no-stream`` runs the same
with ``streaming.enabled: false`` (the whole answer first, then its parts).

    python bench/bench_stream.py [N] [--local | --server] [--no-stream]
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
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
    wait_ready,
)

from kryten_llm.bus.settle import settle
from kryten_llm.llm.local import bundled_model
from tests.natsserver import free_port

QUESTIONS = (
    "what is your favourite old science fiction film",
    "is Plan 9 from Outer Space any good",
    "who would win, a robot monster or a giant ant",
    "which film should we watch next",
    "what makes a B-movie fun to watch",
)


def llamacpp_server(model: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m llama_cpp.server`` on a free port, and its ``/v1`` URL once it is ready."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias",
         "smollm2-135m", "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2):
                return process, url
        except OSError:
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError("llama.cpp server not ready in 60 s")


def log_lines(directory: Path) -> list[dict[str, Any]]:
    """Every complete response-log line (one being written has no newline yet)."""
    return [
        json.loads(line)
        for path in sorted(directory.glob("responses-*.jsonl"))
        for line in path.read_text().split("\n")[:-1]
    ]


def quantiles(values: list[float]) -> str:
    if len(values) < 2:
        return "n/a"
    q = statistics.quantiles(values, n=100)
    return f"p50 {q[49]:7.0f} ms, p95 {q[94]:7.0f} ms"


async def main(count: int, mode: str, stream: bool) -> None:
    model = bundled_model()
    assert model is not None, "SmolLM2 is not installed: make install-local"
    llama: subprocess.Popen[bytes] | None = None
    provider: dict[str, Any] = {"max_tokens": 64, "timeout_seconds": 60, "temperature": 0.7}
    if mode == "server":
        llama, url = llamacpp_server(model)
        provider |= {"type": "openai", "base_url": url, "model": "smollm2-135m"}
    else:
        provider |= {"type": "local", "threads": 2}
    server = NatsServer()
    server.start()
    logs = Path(tempfile.mkdtemp())
    config = bench_config(
        server.url,
        logs,
        llm={"providers": {"smol": provider}, "default_provider": "smol"},
        streaming={"enabled": stream},
        validation={"retry": False},  # one model call per mention: timings stay comparable
        web={"enabled": False},
    )
    bot = Bot(config)
    nc = await connect(server.url)
    first_say: list[float] = []
    try:
        await wait_ready(nc, 120)
        sub = await nc.subscribe("kryten.robot.command")
        await settle(nc)
        for i in range(count + 1):  # the first one loads the model: not counted
            question = f"hey cynthia, {QUESTIONS[i % len(QUESTIONS)]}? (#{i})"
            start = time.perf_counter()
            await nc.publish(SUBJECT, chat_bytes(f"user{i}", question))
            await nc.flush()
            seen = False
            while len(log_lines(logs)) < i + 1:
                try:
                    await sub.next_msg(0.05)
                except Exception:
                    continue
                if not seen and i > 0:
                    first_say.append((time.perf_counter() - start) * 1000)
                seen = True
            while True:  # drain what was sent for this mention
                try:
                    await sub.next_msg(0.01)
                except Exception:
                    break
    finally:
        await nc.close()
        bot.stop()
        server.close()
        if llama is not None:
            llama.terminate()
            llama.wait(10)
    records = log_lines(logs)[1:]
    answered = [r for r in records if r.get("first_part_ms") is not None]
    reasons: dict[str, int] = {}
    for record in records:
        reasons[record["reason"]] = reasons.get(record["reason"], 0) + 1
    first = [r["first_part_ms"] for r in answered]
    last = [r["last_part_ms"] for r in answered]
    parts = [len(r["parts"]) for r in answered]
    where = "in-process (local provider)" if mode == "local" else "llama.cpp server (openai)"
    print(f"machine: {machine()}")
    print(f"model: SmolLM2-135M-Instruct Q4_1, {where}, max_tokens 64, streaming {stream}")
    print(f"mentions: {count} (after 1 warm-up), decisions: {reasons}")
    print(f"parts per answer: mean {statistics.mean(parts) if parts else 0:.2f}")
    print(f"time to first part (bot log): {quantiles(first)}")
    print(f"time to last part  (bot log): {quantiles(last)}")
    print(f"first say at the bridge:      {quantiles(first_say)}")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    chosen = "server" if "--server" in sys.argv else "local"
    asyncio.run(main(int(args[0]) if args else 50, chosen, "--no-stream" not in sys.argv))
