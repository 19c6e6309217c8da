"""Import nats-py without paying for aiohttp before the bot listens.

nats-py imports aiohttp at module level for one thing only, its WebSocket transport
(``nats/aio/transport.py`` looks the module up when a ``ws://`` connection is made). That import
is about a third of the bot's start: here ~60 ms of ~0.4 s, most of it aiohttp's connector
building its SSL contexts. The bot needs aiohttp only once it listens (providers, dashboard), so
for NATS over plain TCP nats-py is imported with aiohttp hidden, and aiohttp is handed back to
nats-py as soon as the bot imports it after subscribing. With a ``ws://`` or ``wss://`` server
configured, nothing is hidden.

``python bench/bench_startup.py`` measures the start; BENCHMARKS.md, "(startup)", the gain.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

_WEBSOCKET = ("ws://", "wss://")  # anywhere in the URL, as nats-py looks (ours ignores case)


def import_nats(servers: Sequence[str]) -> bool:
    """Import nats-py; returns whether aiohttp was kept out of it (see :func:`give_aiohttp_back`).

    Nothing is hidden when nats-py or aiohttp is loaded already, or when a server is reached
    over WebSocket (the transport needs aiohttp to connect).
    """
    if "nats" in sys.modules or "aiohttp" in sys.modules:
        return False
    if any(mark in server.lower() for server in servers for mark in _WEBSOCKET):
        return False
    sys.modules["aiohttp"] = None  # type: ignore[assignment]  # `import aiohttp` fails meanwhile
    try:
        import nats.aio.client  # the import is the point
    except ImportError:
        hidden = False  # a nats-py that needs aiohttp for more than WebSocket: take it whole
    else:
        hidden = True
    finally:
        del sys.modules["aiohttp"]
    if not hidden:
        import nats.aio.client  # noqa: F401
    return hidden


def give_aiohttp_back() -> None:
    """Import aiohttp (if not yet) and give it to nats-py's WebSocket transport with multidict,
    which the same failed import left out, as nats-py would have had them; a no-op when nothing
    was hidden."""
    import aiohttp
    import multidict
    from nats.aio import transport

    for name, module in (("aiohttp", aiohttp), ("multidict", multidict)):
        if hasattr(transport, name) and getattr(transport, name) is None:
            setattr(transport, name, module)
