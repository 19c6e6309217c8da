"""Cost of failing over: a reply through the secondary while the primary's circuit is open.

The primary is an OpenAI-compatible provider whose port refuses connections; after its circuit
opens, every reply goes to the secondary (the scripted provider, no latency). The figure is the
manager's overhead over calling the secondary directly. Target: at most 5 ms more.

    python bench/bench_fallback.py [N]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

import aiohttp
from _harness import machine

from kryten_llm.config import LLMConfig, ProviderConfig
from kryten_llm.llm import ChatMessage, CompletionRequest, build_manager
from kryten_llm.logs import configure_logging
from kryten_llm.sim.natsserver import free_port

REQUEST = CompletionRequest(messages=(ChatMessage("user", "hello there"),))


async def main(count: int) -> None:
    configure_logging("WARNING", "json")  # as the service runs: debug lines filtered out
    config = LLMConfig(
        providers={
            "primary": ProviderConfig(base_url=f"http://127.0.0.1:{free_port()}/v1"),
            "secondary": ProviderConfig(type="scripted"),
        },
        default_provider="primary",
        fallback=["secondary"],
        retry={"attempts": 1},  # type: ignore[arg-type]
        circuit={"failure_threshold": 1, "open_seconds": 3600},  # type: ignore[arg-type]
    )
    async with aiohttp.ClientSession() as session:
        manager = build_manager(config, session)
        secondary = manager.providers["secondary"]
        await manager.complete(REQUEST, deadline=time.monotonic() + 5)  # opens the circuit
        assert manager.health["primary"].state == "open"
        direct, through = [], []
        for _ in range(count):
            start = time.perf_counter()
            await secondary.complete(REQUEST)
            direct.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            result = await manager.complete(REQUEST, deadline=time.monotonic() + 5)
            through.append((time.perf_counter() - start) * 1000)
            assert result.provider == "secondary"
    d, t = statistics.quantiles(direct, n=100), statistics.quantiles(through, n=100)
    print(f"machine: {machine()}")
    print(f"replies: {count}")
    print(f"secondary directly:     p50 {d[49] * 1000:.1f} µs, p99 {d[98] * 1000:.1f} µs")
    print(f"via manager, open primary: p50 {t[49] * 1000:.1f} µs, p99 {t[98] * 1000:.1f} µs")
    print(f"added by failing over: p99 {(t[98] - d[98]):.3f} ms (target <= 5 ms)")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000))
