"""nats-py imported without aiohttp before the bot listens, and given it back afterwards.

The import state is process-wide, so the first two tests look at it in fresh interpreters; the
last one starts the bot from the command line over plain TCP and over WebSocket, the one
transport of nats-py that needs aiohttp, and has it answer a mention each way.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.botproc import BotProcess, bot_env
from tests.bridge import FakeBridge
from tests.conftest import config_for, eventually, write_json
from tests.natsserver import ConfiguredNatsServer, free_port

PROBE = """
import json, sys
from kryten_llm.bus.natsload import give_aiohttp_back, import_nats
hidden = import_nats(sys.argv[1:])
from nats.aio import transport
def without():  # modules that took the hidden aiohttp as missing
    return sorted(n for n, m in list(sys.modules.items()) if getattr(m, "aiohttp", 0) is None)
state = {"hidden": hidden, "aiohttp_loaded": "aiohttp" in sys.modules,
         "transport_has_it": transport.aiohttp is not None, "without": without()}
give_aiohttp_back()
state["without_after"] = without()
state["given_back"] = (transport.aiohttp, transport.multidict) == (
    sys.modules["aiohttp"], sys.modules["multidict"])
print(json.dumps(state))
"""


PROBE_WHOLE = """
import json, sys
from kryten_llm.bus.natsload import import_nats
hidden = import_nats(sys.argv[1:])
imported = "nats.aio.client" in sys.modules
import nats.aio.client
print(json.dumps({"hidden": hidden, "imported": imported,
                  "client": hasattr(nats.aio.client, "CLIENT"),
                  "from": nats.__file__}))
"""


def probe(*servers: str, script: str = PROBE, env: dict[str, str] | None = None) -> Any:
    """What ``script`` prints (JSON), run in a fresh interpreter with ``servers`` as arguments."""
    done = subprocess.run(
        [sys.executable, "-c", script, *servers],
        capture_output=True,
        text=True,
        env=env or bot_env(),
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


@pytest.mark.parametrize(
    ("servers", "hidden"),
    [
        pytest.param(("nats://127.0.0.1:4222", "tls://127.0.0.1:4443"), True, id="tcp"),
        pytest.param(("ws://127.0.0.1:8080",), False, id="websocket"),
        pytest.param((" wss://127.0.0.1:8443",), False, id="secure websocket, as nats-py reads"),
    ],
)
def test_nats_gets_aiohttp_late_over_tcp_and_at_once_over_websocket(
    servers: tuple[str, ...], hidden: bool
) -> None:
    assert probe(*servers) == {
        "hidden": hidden,
        "aiohttp_loaded": not hidden,
        "transport_has_it": not hidden,
        # Only the WebSocket transport does without aiohttp meanwhile (a later nats-py that
        # looks for it elsewhere fails here), and nothing does once it is handed back.
        "without": ["nats.aio.transport"] if hidden else [],
        "without_after": [],
        "given_back": True,
    }


def test_a_nats_py_that_needs_aiohttp_everywhere_is_imported_whole(tmp_path: Path) -> None:
    """Should a later nats-py import aiohttp where it cannot do without, the bot still starts."""
    client = tmp_path / "nats" / "aio" / "client.py"
    client.parent.mkdir(parents=True)
    for package in (tmp_path / "nats", client.parent):
        (package / "__init__.py").write_text("")
    client.write_text("import aiohttp\nCLIENT = aiohttp.ClientSession\n")
    env = bot_env()
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    assert probe("nats://127.0.0.1:4222", script=PROBE_WHOLE, env=env) == {
        "hidden": False,
        "imported": True,
        "client": True,
        "from": str(tmp_path / "nats" / "__init__.py"),
    }


@pytest.mark.nats
@pytest.mark.parametrize("scheme", ["nats", "ws"])
async def test_the_bot_started_from_the_command_line_answers_over_either_transport(
    scheme: str, tmp_path: Path
) -> None:
    ws_port = free_port()
    server = ConfiguredNatsServer(config=f"websocket {{ port: {ws_port}, no_tls: true }}")
    server.start()
    try:
        url = server.url if scheme == "nats" else f"ws://127.0.0.1:{ws_port}"
        config = config_for(
            url,
            tmp_path,
            llm={"providers": {"echo": {"type": "scripted"}}, "default_provider": "echo"},
            logging={"response_log_dir": str(tmp_path), "level": "INFO", "format": "json"},
        )
        bot = BotProcess(write_json(tmp_path / "config.json", config))
        try:
            async with FakeBridge(server.url) as bridge:
                await eventually(
                    lambda: bot.events("service_started") or bot.proc.poll() is not None, 30
                )
                assert bot.proc.poll() is None, bot.tail()
                await bridge.chat("alice", "CynthiaRothbot, say something")
                await bridge.wait_for_commands(1, timeout=20)
            (said,) = bridge.says()
            assert "say something" in said
        finally:
            assert await bot.stop() == 0, bot.tail()
    finally:
        server.close()
