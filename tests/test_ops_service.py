"""The operator surface of a running bot: /health, /metrics, controls, $SRV, commands, KV."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kryten_llm.bus.settle import settle
from kryten_llm.service import Service
from tests.bridge import FakeBridge
from tests.conftest import eventually, running, settings_for
from tests.natsserver import NatsServer, free_port

pytestmark = pytest.mark.nats

TOKEN = "s3cret-token"


def url(service: Service, path: str) -> str:
    assert service.surface is not None
    assert service.surface.web is not None
    return f"http://127.0.0.1:{service.surface.web.port}{path}"


async def get_json(session: aiohttp.ClientSession, address: str) -> tuple[int, dict[str, Any]]:
    async with session.get(address) as response:
        return response.status, await response.json()


async def control(
    session: aiohttp.ClientSession, service: Service, body: Any, token: str | None = TOKEN
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with session.post(url(service, "/api/control"), json=body, headers=headers) as response:
        return response.status, await response.json()


def with_failing_primary(
    nats_url: str, log_dir: Path, *, failure_threshold: int = 1, **sections: Any
) -> Any:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    return settings_for(
        nats_url,
        log_dir,
        llm={
            "providers": {
                "primary": {"type": "openai", "base_url": dead, "timeout_seconds": 1},
                "backup": {"type": "scripted", "replies": ["backup here"]},
            },
            "default_provider": "primary",
            "fallback": ["backup"],
            "retry": {"attempts": 1, "base_delay_seconds": 0.01},
            "circuit": {"failure_threshold": failure_threshold, "open_seconds": 300},
        },
        **sections,
    )


async def test_health_is_degraded_when_a_providers_circuit_opens(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    settings = settings_for(nats_server.url, tmp_path)
    async with running(Service(settings)) as service:
        status, health = await get_json(session, url(service, "/health"))
        assert (status, health["status"], health["reasons"]) == (200, "healthy", [])
    # The same bot, but its primary refuses connections: the startup probe opens its circuit.
    settings = with_failing_primary(nats_server.url, tmp_path)
    async with running(Service(settings)) as service:
        await bridge.chat("alice", "cynthia, hello?")
        await bridge.wait_for_commands(1)
        status, health = await get_json(session, url(service, "/health"))
    assert status == 200
    assert health["status"] == "degraded"
    assert "provider primary is open" in health["reasons"]
    assert health["components"]["providers"]["primary"]["state"] == "open"
    assert health["components"]["nats"]["connected"] is True
    assert bridge.says() == ["backup here"]


async def test_health_is_failing_when_nats_is_gone(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    server = NatsServer()
    server.start()
    try:
        settings = settings_for(server.url, tmp_path)
        async with running(Service(settings)) as service:
            server.stop()
            await eventually(lambda: service.nc is not None and not service.nc.is_connected)
            status, health = await get_json(session, url(service, "/health"))
    finally:
        server.close()
    assert status == 503
    assert health["status"] == "failing"
    assert "not connected to NATS" in health["reasons"]


async def test_metrics_parse_and_count_what_happened(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    # The startup probe is the primary's first failure; the reply's call is its second.
    settings = with_failing_primary(nats_server.url, tmp_path, failure_threshold=2)
    async with running(Service(settings)) as service:
        await bridge.chat("bob", "just chatting")
        await bridge.chat("alice", "cynthia, hello?")
        await bridge.wait_for_commands(1)
        await eventually(lambda: service.stats["decision_answered"] == 1)
        await eventually(lambda: service.stats["chat"] == 3)  # the bridge echoes the reply
        async with session.get(url(service, "/metrics")) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await response.text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    # bob, alice, and the bridge's echo of the bot's own reply
    assert samples[("kryten_llm_events_total", (("type", "chat"),))] == 3
    assert samples[("kryten_llm_triggers_total", (("kind", "mention"),))] == 1
    assert samples[("kryten_llm_decisions_total", (("reason", "answered"),))] == 1
    assert samples[("kryten_llm_replies_total", ())] == 1
    outcome = (("outcome", "ProviderUnavailable"), ("provider", "primary"))
    assert samples[("kryten_llm_provider_calls_total", outcome)] == 1
    assert (
        samples[("kryten_llm_provider_calls_total", (("outcome", "ok"), ("provider", "backup")))]
        == 1
    )
    assert samples[("kryten_llm_provider_latency_seconds_count", (("provider", "backup"),))] == 1
    assert samples[("kryten_llm_provider_state", (("provider", "primary"), ("state", "open")))] == 1
    assert samples[("kryten_llm_health_status", (("status", "degraded"),))] == 1
    assert samples[("kryten_llm_queue_depth", ())] == 0
    assert "alice" not in text
    assert "bob" not in text


async def test_controls_are_refused_without_the_token(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    async with running(Service(settings_for(nats_server.url, tmp_path))) as service:
        status, body = await control(session, service, {"action": "pause"})
        assert status == 403
        assert "controls are disabled" in body["error"]
        assert not service.flags.paused
    settings = settings_for(nats_server.url, tmp_path, web={"port": 0, "token": TOKEN})
    async with running(Service(settings)) as service:
        assert (await control(session, service, {"action": "pause"}, token=None))[0] == 401
        assert (await control(session, service, {"action": "pause"}, token="wrong"))[0] == 401
        async with session.get(url(service, "/api/control")) as response:
            assert response.status == 405  # controls are POST only
        assert not service.flags.paused
        status, body = await control(session, service, {"action": "pause"})
        assert (status, body) == (200, {"ok": True, "paused": True})
        await bridge.chat("alice", "cynthia, are you there?")
        await eventually(lambda: service.stats["decision_paused"] == 1)
        assert bridge.commands == []
        assert (await control(session, service, {"action": "resume"}))[0] == 200
        await bridge.chat("alice", "cynthia, and now?")
        await bridge.wait_for_commands(1)
        status, body = await control(session, service, {"action": "dry_run"})
        assert body == {"ok": True, "dry_run": True}
        status, body = await control(session, service, {"action": "selfdestruct"})
        assert status == 400
        assert "unknown action" in body["error"]
        assert (await control(session, service, {"action": "clear_cooldowns"}))[0] == 200


async def test_switching_personality_changes_names_and_the_system_prompt(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    settings = settings_for(
        nats_server.url,
        tmp_path,
        web={"port": 0, "token": TOKEN},
        personalities={
            "cynthia": {"character_name": "CynthiaRothbot", "name_variations": ["cynthia"]},
            "critic": {"character_name": "Roger", "name_variations": ["rog"]},
        },
        active_personality="cynthia",
    )
    service = Service(settings, overrides_file=tmp_path / "overrides.json")
    async with running(service):
        await bridge.chat("alice", "rog, thoughts?")
        await eventually(lambda: service.stats["chat"] == 1)  # handled as cynthia: not a mention
        status, body = await control(session, service, {"action": "personality", "value": "critic"})
        assert (status, body["personality"]["changed"]) == (200, ["active_personality"])
        await bridge.chat("alice", "rog, thoughts now?")
        await bridge.wait_for_commands(1)
        status, body = await control(session, service, {"action": "personality", "value": "nobody"})
        assert status == 400
        assert "configured: critic, cynthia" in body["error"]
        assert service.bot is not None
        (context,) = service.bot.channels.values()
        assert context.character.reply is not None
        assert context.character.reply.prompts.system.startswith("You are Roger,")
    assert bridge.says() == ["You said: alice: rog, thoughts now?"]


async def test_services_api_and_the_command_endpoint(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    settings = settings_for(nats_server.url, tmp_path, web={"port": 0, "token": TOKEN})
    async with running(Service(settings)) as service:
        nc = await nats.connect(nats_server.url)
        try:

            async def ask(subject: str, body: Any = b"") -> dict[str, Any]:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                reply = await nc.request(subject, data, timeout=2)
                return json.loads(reply.data)  # type: ignore[no-any-return]

            ping = await ask("$SRV.PING.llm")
            assert ping["name"] == "llm"
            assert ping["type"] == "io.nats.micro.v1.ping_response"
            info = await ask("$SRV.INFO.llm")
            assert [e["subject"] for e in info["endpoints"]] == ["kryten.llm.command"]
            assert (await ask("kryten.llm.command", {"command": "ping"}))["pong"] is True
            health = await ask("kryten.llm.command", {"command": "health"})
            assert health["health"]["status"] == "healthy"
            config = await ask("kryten.llm.command", {"command": "config"})
            assert config["config"]["web"]["token"] == "**********"
            assert TOKEN not in json.dumps(config)
            refused = await ask("kryten.llm.command", {"command": "pause"})
            assert refused == {"ok": False, "error": "a valid control token is required"}
            assert not service.flags.paused
            paused = await ask("kryten.llm.command", {"command": "pause", "token": TOKEN})
            assert paused == {"ok": True, "paused": True, "instance": service.instance}
            assert service.flags.paused
            assert (await ask("kryten.llm.command", b"{not json"))["ok"] is False
            unknown = await ask("kryten.llm.command", {"command": "x", "token": TOKEN})
            assert "unknown action 'x'" in unknown["error"]
            assert "reload" in unknown["error"]
            stats = await ask("kryten.llm.command", {"command": "stats"})
            assert stats["ok"] is True
            assert isinstance(stats["stats"], dict)
            srv_stats = await ask("$SRV.STATS.llm")
            assert srv_stats["endpoints"][0]["num_requests"] >= 8
        finally:
            await nc.close()


async def test_lifecycle_is_mirrored_and_the_instance_is_kept_in_kv(tmp_path: Path) -> None:
    """A server of its own: the bucket's TTL is set by whoever creates it first."""
    with NatsServer() as nats_server:
        await _mirrored_and_kept(nats_server, tmp_path)


async def _mirrored_and_kept(nats_server: NatsServer, tmp_path: Path) -> None:
    nc = await nats.connect(nats_server.url)
    seen: dict[str, list[dict[str, Any]]] = {}

    async def collect(msg: Any) -> None:
        seen.setdefault(msg.subject, []).append(json.loads(msg.data))

    try:
        for subject in (
            "kryten.service.discovery",
            "kryten.service.heartbeat.>",
            "kryten.service.heartbeat",
        ):
            await nc.subscribe(subject, cb=collect)
        await settle(nc, 2)
        settings = settings_for(
            nats_server.url, tmp_path, service={"heartbeat_interval_seconds": 1}
        )
        kv = None
        async with running(Service(settings)):
            await eventually(lambda: "kryten.service.heartbeat.llm" in seen, timeout=5)
            (startup,) = seen["kryten.service.discovery"]
            assert startup["service"] == "llm"
            assert startup["metadata"]["endpoints"]["health"]["path"] == "/health"
            heartbeat = seen["kryten.service.heartbeat"][0]
            assert heartbeat["metadata"]["health"]["status"] == "healthy"
            kv = await nc.jetstream().key_value("kryten_services")
            entry = await kv.get("llm")
            assert entry.value is not None
            assert json.loads(entry.value)["service"] == "llm"
            status = await kv.status()
            assert status.ttl == pytest.approx(3.0)
        assert kv is not None
        with pytest.raises(nats.js.errors.KeyNotFoundError):
            await kv.get("llm")  # deleted at shutdown
    finally:
        await nc.close()


async def test_the_stream_pushes_snapshots(
    nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    settings = settings_for(
        nats_server.url, tmp_path, web={"port": 0, "push_interval_seconds": 0.2}
    )
    async with (
        running(Service(settings)) as service,
        session.get(url(service, "/api/stream")) as response,
    ):
        assert response.headers["Content-Type"] == "text/event-stream"
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        first = json.loads((await response.content.readline()).decode()[len("data: ") :])
        await bridge.chat("alice", "cynthia <script>alert(1)</script>")
        await bridge.wait_for_commands(1)
        latest = first
        while not latest["recent"]:
            line = (await response.content.readline()).decode()
            if line.startswith("data: "):
                latest = json.loads(line[len("data: ") :])
    assert first["counters"]["chat"] == 0
    assert latest["counters"]["chat"] >= 1
    assert latest["recent"][0]["text"] == "cynthia <script>alert(1)</script>"
    assert latest["service"]["controls_enabled"] is False


async def test_the_shipped_alert_rules_use_only_exported_metrics(
    nats_server: NatsServer, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    rules = (Path(__file__).parent.parent / "docs" / "prometheus-alerts.yml").read_text()
    used = set(re.findall(r"\b(kryten_llm_[a-z_]+)", rules))
    assert len(used) >= 5
    async with (
        running(Service(settings_for(nats_server.url, tmp_path))) as service,
        session.get(url(service, "/metrics")) as response,
    ):
        text = await response.text()
    # A counter with labels has no sample before its first event: compare family names.
    families = {family.name for family in text_string_to_metric_families(text)}
    missing = {name for name in used if name.removesuffix("_total") not in families}
    assert not missing


async def test_a_foreign_host_name_is_refused_on_loopback(
    nats_server: NatsServer, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 cannot read the state."""
    async with running(Service(settings_for(nats_server.url, tmp_path))) as service:
        async with session.get(url(service, "/api/state"), headers={"Host": "evil.example"}) as r:
            assert r.status == 421
        async with session.get(url(service, "/api/state"), headers={"Host": "localhost:1"}) as r:
            assert r.status == 200


async def test_bound_beyond_loopback_chat_text_needs_the_token(tmp_path: Path) -> None:
    """``web.host: 0.0.0.0``: who said what is hidden from requests without the control token.

    The server under test is still reached only on 127.0.0.1: aiohttp's test server serves the
    same application object, and the exposure is decided from the configured host.
    """
    from aiohttp.test_utils import TestClient, TestServer

    from kryten_llm.config import WebConfig
    from kryten_llm.ops.controls import Controls
    from kryten_llm.ops.web import WebServer

    snapshot = {
        "recent": [{"username": "alice", "text": "my secret", "reply": "hi", "reason": "answered"}]
    }
    server = WebServer(
        WebConfig(host="0.0.0.0", token="s3cret"),
        state=lambda: snapshot,
        health=lambda: {"status": "healthy"},
        metrics=lambda: "",
        controls=Controls(None, "s3cret"),  # type: ignore[arg-type]  # no action is run
    )
    assert server.exposed
    async with TestClient(TestServer(server.app, host="127.0.0.1")) as client:
        anonymous = await (await client.get("/api/state")).json()
        assert anonymous["recent"] == [{"reason": "answered"}]
        assert anonymous["chat_hidden"] is True
        wrong = await client.get("/api/state", headers={"Authorization": "Bearer nope"})
        assert "text" not in (await wrong.json())["recent"][0]
        holder = await client.get("/api/state", headers={"Authorization": "Bearer s3cret"})
        assert (await holder.json())["recent"][0]["text"] == "my secret"
        stream = await client.get("/api/stream")
        first = await stream.content.readline()
        assert b"my secret" not in first
        assert b'"reason":"answered"' in first
        stream.close()
        health = await client.get("/health")
        assert health.status == 200
