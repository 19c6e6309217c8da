"""The demo and the channel simulator, run for real against nats-server."""

from __future__ import annotations

import io
import json
import re
import socket
import subprocess
import sys
import unicodedata
from typing import Any

import nats
import pytest

from kryten_llm.bus.settle import settle
from kryten_llm.pipeline.formatter import SLASHES
from kryten_llm.sim.channel import SimulatedChannel
from kryten_llm.sim.demo import run_demo, run_simulate
from tests.conftest import eventually
from tests.natsserver import NatsServer

pytestmark = pytest.mark.nats


class Tap:
    """Everything on the bus, as (subject, body)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, Any]] = []

    async def record(self, msg: Any) -> None:
        self.messages.append((msg.subject, json.loads(msg.data)))

    def commands(self) -> list[dict[str, Any]]:
        return [body for subject, body in self.messages if subject == "kryten.robot.command"]


async def test_the_demo_answers_questions_and_refuses_the_spammer_and_the_other_bot(
    nats_server: NatsServer,
) -> None:
    nc = await nats.connect(nats_server.url)
    tap = Tap()
    await nc.subscribe("kryten.robot.command", cb=tap.record)
    await settle(nc)
    out = io.StringIO()
    try:
        code = await run_demo(
            duration=9.0,
            nats_url=nats_server.url,
            provider="scripted",
            speed=2.5,
            seed=1,
            out=out,
        )
    finally:
        await nc.close()
    transcript = out.getvalue()
    assert code == 0
    says = [c for c in tap.commands() if c["command"] == "say"]
    assert len(says) >= 3
    for body in says:
        assert list(body) == ["command", "args", "meta"]
        assert list(body["meta"]) == ["source", "timestamp", "domain", "channel", "request_id"]
        text = unicodedata.normalize("NFKC", body["args"]["message"]).lstrip("\u200b\ufeff ")
        assert text[0] not in SLASHES
    assert re.search(r"-> bob: answered by scripted", transcript)
    assert re.search(r"-> carol: answered by scripted", transcript)
    assert "-> SpamLord: ignored as spam" in transcript
    assert "-> HelperBot: ignored: other bot" in transcript
    assert re.search(r"-> mallory: answered", transcript)  # answered, and safely (above)
    assert "HelperBot" not in " ".join(b["args"]["message"] for b in says)


async def test_simulate_publishes_what_the_bridge_publishes_and_echoes_say(
    nats_server: NatsServer,
) -> None:
    nc = await nats.connect(nats_server.url)
    tap = Tap()
    raw: list[bytes] = []

    async def keep_raw(msg: Any) -> None:
        raw.append(msg.data)

    await nc.subscribe("kryten.events.cytube.mychannel.>", cb=tap.record)
    await nc.subscribe("kryten.events.cytube.mychannel.chatmsg", cb=keep_raw)
    await settle(nc)
    sim_nc = await nats.connect(nats_server.url)
    sim = SimulatedChannel(sim_nc, channel="MyChannel", bot_username="Bot")
    await sim.start()
    try:
        await sim.chat("alice", "what's <this> (really)?")
        say = {
            "command": "say",
            "args": {"message": "hello & welcome"},
            "meta": {
                "source": "t",
                "timestamp": "x",
                "domain": "cytu.be",
                "channel": "mychannel",
                "request_id": "r",
            },
        }
        elsewhere = {
            "command": "say",
            "args": {"message": "for another domain"},
            "meta": {**say["meta"], "domain": "CYTU.BE"},
        }
        await nc.publish("kryten.robot.command", json.dumps(elsewhere).encode())
        await nc.publish("kryten.robot.command", json.dumps(say).encode())
        # The simulator takes commands in order: by the time the second is echoed, an echo
        # of the first (refused: the domain must match exactly) would be here before it.
        await eventually(lambda: len(raw) >= 2 and b"welcome" in raw[-1])
    finally:
        await sim.stop()
        await sim_nc.close()
        await nc.close()
    first = json.loads(raw[0])
    assert list(first) == [
        "event_name",
        "payload",
        "channel",
        "domain",
        "timestamp",
        "correlation_id",
    ]
    assert raw[0] == json.dumps(first).encode()  # default json.dumps, byte for byte
    assert first["timestamp"].endswith("+00:00")
    assert first["payload"]["msg"] == "what&#39;s &lt;this&gt; &#40;really&#41;?"
    assert "rank" not in first["payload"]
    assert len(raw) == 2
    echo = json.loads(raw[1])["payload"]
    assert (echo["username"], echo["msg"]) == ("Bot", "hello &amp; welcome")
    assert sim.refused == 1  # the routing guard dropped the wrong-domain command
    assert [c.text for c in sim.commands] == ["hello & welcome"]


async def test_simulate_command_runs_the_scenario_against_a_server(
    nats_server: NatsServer,
) -> None:
    nc = await nats.connect(nats_server.url)
    tap = Tap()
    await nc.subscribe("kryten.events.cytube.mychannel.>", cb=tap.record)
    await settle(nc)
    out = io.StringIO()
    try:
        code = await run_simulate(
            nats_url=nats_server.url, channel="MyChannel", duration=2.0, speed=4.0, out=out
        )
    finally:
        await nc.close()
    assert code == 0
    names = [body["event_name"] for _, body in tap.messages]
    assert names[:4] == ["userlist", "setCurrent", "changeMedia", "chatMsg"]
    assert "alice: hi everyone!" in out.getvalue()


def test_the_demo_command_exits_cleanly_and_leaves_no_nats_server() -> None:
    """`kryten-llm demo --duration` ends by itself, exits 0, and its nats-server is gone."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kryten_llm",
            "demo",
            "--duration",
            "4",
            "--speed",
            "3",
            "--provider",
            "scripted",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    match = re.search(r"NATS nats://127\.0\.0\.1:(\d+)", result.stdout)
    assert match is not None, result.stdout
    port = int(match[1])
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 1):
        pass
    assert "answered by scripted" in result.stdout
