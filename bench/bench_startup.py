"""How long from spawning a process to its subscription on the channel's subject being live.

The bot is started as an operator starts it (``python -m kryten_llm --config``); the same is
measured for a bare nats-py client that connects and subscribes to the same subject, the floor
any Python service can reach, and for the same client importing nats-py without aiohttp, as
the bot does (``bus/natsload.py``): the floor of the bot's way. ``kryten-llm --version`` is
timed too (the front door).

Interest is detected without help from the process under test: a request to the subject gets
"no responders" from the server at once while nobody subscribes, and times out once someone
does (the bot never replies to events). The time of the first request that timed out is when
the subscription was live.

Every process runs from compiled bytecode, as an installed package does (``_harness.PYCACHE``);
one spawn of each, not counted, fills the cache. Before 2026-11-30 (startup) the bot's own
modules were compiled anew at every spawn wherever ``PYTHONDONTWRITEBYTECODE`` was set.

python bench/bench_startup.py          # 10 spawns each (BENCH_RUNS to change)
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nats
import nats.errors
from _harness import CODE, NatsServer, bench_config, child_env, cpu_seconds, machine

SUBJECT = "kryten.events.cytube.mychannel.chatmsg"
BARE = (
    "import asyncio, sys, nats\n"
    "async def main():\n"
    "    nc = await nats.connect(sys.argv[1])\n"
    f"    await nc.subscribe({SUBJECT!r})\n"
    "    await asyncio.Event().wait()\n"
    "asyncio.run(main())\n"
)
# The same client with nats-py imported as the bot imports it (bus/natsload.py): without
# aiohttp, which nats-py loads for its WebSocket transport alone.
LEAN = "import sys\nsys.modules['aiohttp'] = None\n" + BARE


async def nobody_subscribed(nc: nats.NATS) -> None:
    """Wait until the server has seen the last process go (its subscription would answer)."""
    for _ in range(200):
        try:
            await nc.request(SUBJECT, b"{}", timeout=0.05)
        except nats.errors.NoRespondersError:
            return
        except nats.errors.TimeoutError:
            continue
    raise RuntimeError("the last process is still subscribed")


async def spawn_to_subscribed(
    nc: nats.NATS, argv: list[str], env: dict[str, str]
) -> tuple[float, float]:
    """Seconds from spawn to subscribed, and the CPU seconds the process had used by then
    (steadier than the wall clock on a busy machine; read as each probe is sent)."""
    await nobody_subscribed(nc)
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=CODE
    )
    try:
        while True:
            cpu = cpu_seconds(process.pid)
            sent = time.monotonic()
            try:
                await nc.request(SUBJECT, b"{}", timeout=0.05)
            except nats.errors.NoRespondersError:
                if sent - started > 30:
                    raise RuntimeError("never subscribed") from None
                continue
            except nats.errors.TimeoutError:
                return sent - started, cpu
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 20)


def version_seconds(env: dict[str, str]) -> float:
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "kryten_llm", "--version"],
        check=True,
        capture_output=True,
        cwd=CODE,
        env=env,
    )
    return time.monotonic() - started


async def main() -> None:
    runs = int(os.environ.get("BENCH_RUNS", "10"))
    with NatsServer() as server, tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.json"
        bot_config = bench_config(server.url, Path(tmp) / "logs")
        bot_config["web"] = {"port": 0}
        config.write_text(json.dumps(bot_config))
        env = child_env()
        argvs = {
            "bare nats-py": [sys.executable, "-c", BARE, server.url],
            "bare, lean": [sys.executable, "-c", LEAN, server.url],
            "kryten-llm bot": [sys.executable, "-m", "kryten_llm", "--config", str(config)],
        }
        nc = await nats.connect(server.url)
        for argv in argvs.values():  # not counted: compiles and stores the bytecode
            await spawn_to_subscribed(nc, argv, env)
        samples: dict[str, list[float]] = {name: [] for name in argvs}
        cpu: dict[str, list[float]] = {name: [] for name in argvs}
        for _ in range(runs):  # interleaved, so a busy moment of the machine hits all alike
            for name, argv in argvs.items():
                seconds, used = await spawn_to_subscribed(nc, argv, env)
                samples[name].append(seconds)
                cpu[name].append(used)
        await nc.close()
        version = [version_seconds(env) for _ in range(runs)]
    print(f"machine: {machine()}; {runs} runs each")
    samples["--version"] = version
    for name, values in samples.items():
        used = f", CPU median {statistics.median(cpu[name]):.2f} s" if name in cpu else ""
        print(
            f"{name:>15}: median {statistics.median(values):.3f} s, "
            f"min {min(values):.3f} s, max {max(values):.3f} s{used}"
        )


if __name__ == "__main__":
    asyncio.run(main())
