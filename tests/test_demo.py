"""The demo and the channel simulator, run for real against nats-server."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import unicodedata
from pathlib import Path
from typing import Any

import nats
import pytest

from kryten_llm.bus.settle import settle
from kryten_llm.config import ProviderConfig
from kryten_llm.pipeline.formatter import SLASHES
from kryten_llm.sim.channel import SimulatedChannel
from kryten_llm.sim.demo import run_demo, run_simulate
from kryten_llm.sim.nearby import ProbeTarget, choose, find_local_server
from kryten_llm.sim.script import RoundWriter
from kryten_llm.sim.tally import Tally
from tests.conftest import eventually
from tests.natsserver import NatsServer
from tests.openai_server import ScriptedOpenAIServer, closed_port, malformed_json, status

ROOT = Path(__file__).resolve().parent.parent
# Refusals the scenario provokes on purpose; anything else refused is a regression.
# (The spam burst's first lines can meet the global cooldown before the spam guard's count.)
DELIBERATE = {
    "answered",
    "spam",
    "other_bot",
    "rate_limited (user_cooldown)",
    "rate_limited (global_cooldown)",
}

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
    assert re.search(
        r"\] \w+: (hi everyone!|evening all|hey hey|what did I miss\?)\n", out.getvalue()
    )


def _demo_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "kryten_llm", "demo", "--provider", "scripted", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_the_demo_command_exits_cleanly_and_leaves_no_nats_server() -> None:
    """`kryten-llm demo --duration` ends by itself, exits 0, no traceback, nats-server gone."""
    result = subprocess.run(
        _demo_command("--duration", "4", "--speed", "3"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=_env(),
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr == ""
    match = re.search(r"NATS nats://127\.0\.0\.1:(\d+)", result.stdout)
    assert match is not None, result.stdout
    port = int(match[1])
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 1):
        pass
    assert "answered by scripted" in result.stdout


def test_ctrl_c_in_a_terminal_stops_channel_bot_and_server_with_exit_0() -> None:
    """SIGINT to the whole process group (what a terminal's Ctrl+C does) ends it cleanly.

    The embedded nats-server must not get the signal too, or it goes away before the bot's
    connections close and nats-py prints tracebacks.
    """
    proc = subprocess.Popen(
        _demo_command("--speed", "3"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        start_new_session=True,  # its own group, as a shell gives a foreground job
    )
    watchdog = threading.Timer(120, proc.kill)  # a hung demo ends the read loop below
    watchdog.start()
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if "answered by scripted" in line:
                break
        assert any("answered by scripted" in line for line in seen), "".join(seen)
        os.killpg(proc.pid, signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    out = "".join(seen) + rest
    assert proc.returncode == 0, err
    assert "Traceback" not in out + err
    assert err == ""
    assert "bot exited with 0" in out


def test_every_round_is_new_and_the_same_seed_writes_the_same_night() -> None:
    """No user repeats a line in 30 rounds; the seed reproduces the night word for word."""
    nights = []
    for _ in range(2):
        writer = RoundWriter(seed=5)
        nights.append([writer.next_round() for _ in range(30)])
    assert nights[0] == nights[1]
    said = [(ln.user, ln.text) for r in nights[0] for ln in r if ln.action in ("chat", "pm")]
    # The spammer repeats on purpose; channel commands (!skip) are not aimed at the bot.
    spoken = [(u, t) for u, t in said if t and u != "SpamLord" and not t.startswith("!")]
    assert len(spoken) == len(set(spoken))
    assert RoundWriter(seed=6).next_round() != nights[0][0]


async def test_round_three_answers_like_round_one_and_refuses_only_on_purpose(
    nats_server: NatsServer,
) -> None:
    """The scripted channel does not wear the bot's guards down: no unplanned refusals."""
    tally = Tally()

    async def three_rounds_decided() -> None:
        await eventually(
            lambda: len(tally.rounds) >= 4 and tally.rounds[2].decided == tally.rounds[2].aimed,
            timeout=90,
        )

    out = io.StringIO()
    code = await run_demo(
        nats_url=nats_server.url,
        provider="scripted",
        speed=4.0,
        seed=3,
        out=out,
        until=three_rounds_decided,
        tally=tally,
    )
    assert code == 0
    first, third = tally.rounds[0], tally.rounds[2]
    assert first.asked >= 4
    assert third.answered == first.answered == first.asked
    assert third.refused_on_purpose >= 3  # the spam burst and the other bot, at least
    for score in tally.rounds[:3]:
        assert score.unplanned == [], score.line()
    assert set(tally.by_kind) <= DELIBERATE, tally.by_kind
    assert "round 2: " in out.getvalue()
    assert "unplanned refusals" in out.getvalue()


async def test_the_demo_answers_through_a_local_server_it_finds_and_says_which(
    nats_server: NatsServer,
) -> None:
    """A server on the "LM Studio" probe target is picked over SmolLM2 and named."""
    said = iter(range(1000))
    async with ScriptedOpenAIServer(
        models=("qwen2.5-7b-instruct",), responder=lambda _: f"A fine question, {next(said)}."
    ) as llm:
        tally = Tally()

        async def first_answer() -> None:
            await eventually(lambda: tally.first_answer is not None, timeout=60)

        out = io.StringIO()
        targets = (
            ProbeTarget("LM Studio", llm.port, "lmstudio"),
            ProbeTarget("Ollama", closed_port(), "ollama"),
        )
        code = await run_demo(
            nats_url=nats_server.url,
            speed=4.0,
            out=out,
            until=first_answer,
            probe_targets=targets,
            tally=tally,
        )
        models = llm.completions[0].json["model"]
    transcript = out.getvalue()
    assert code == 0
    assert (
        f"answering: provider 'lmstudio' (openai, model qwen2.5-7b-instruct, {llm.base_url})"
        in transcript
    )
    assert f"why: LM Studio is running on 127.0.0.1:{llm.port}" in transcript
    assert "answered by lmstudio" in transcript
    assert models == "qwen2.5-7b-instruct"


async def test_the_model_probe_passes_over_servers_that_fail_or_list_nothing() -> None:
    """Targets are asked in their order; a 500, a body that is not JSON, an empty list or a
    closed port is no server; the first model of the first that lists one is taken."""
    async with (
        ScriptedOpenAIServer() as failing,
        ScriptedOpenAIServer() as garbled,
        ScriptedOpenAIServer(models=()) as empty,
        ScriptedOpenAIServer(models=("", "qwen2.5-7b", "other")) as serving,
    ):
        failing.push_models(status(500))
        garbled.push_models(malformed_json())
        targets = tuple(
            ProbeTarget(name, port, name.lower())
            for name, port in (
                ("Closed", closed_port()),
                ("Failing", failing.port),
                ("Garbled", garbled.port),
                ("Empty", empty.port),
                ("Serving", serving.port),
            )
        )
        found = await find_local_server(targets)
        assert [r.path for r in failing.requests + garbled.requests] == ["/v1/models"] * 2
    assert found == (targets[-1], "qwen2.5-7b")


async def test_without_a_server_or_smollm2_canned_lines_answer_and_the_banner_says_why(
    tmp_path: Path,
) -> None:
    """The absent optional model is named once, in the sentence that says how to switch."""
    async with ScriptedOpenAIServer() as llm:
        pass  # its port is closed again: nothing answers there
    missing = ProviderConfig(type="local", model_path=tmp_path / "absent.gguf")
    choice = await choose(missing, (ProbeTarget("LM Studio", llm.port, "lmstudio"),))
    assert choice.provider == "scripted"
    assert choice.config is None
    assert f"LM Studio :{llm.port}" in choice.why
    assert choice.why.count("SmolLM2") == 2  # "SmolLM2 ... not installed" and how to get it
    assert "switch:" in choice.why
