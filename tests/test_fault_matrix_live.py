"""The fault matrix through the live bot: a mention is answered by the backup in time, and
``/health`` shows what became of the primary.

The same faults as :mod:`tests.test_fault_matrix`, but end to end: the bridge (kryten-py)
publishes a mention into a real nats-server, the bot asks a primary that fails one way on a
scripted HTTP server, the backup answers, and the ``say`` command reaches the bridge within the
primary's timeout (the backup is asked by then) plus the backup's latency. Then ``GET /health``
names the primary's state.
"""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest

from kryten_llm.service import Service
from tests.bridge import FakeBridge
from tests.conftest import running, settings_for
from tests.natsserver import NatsServer
from tests.openai_server import ScriptedOpenAIServer, closed_port, reply
from tests.test_fault_matrix import FAULTS, PRIMARY_TIMEOUT, SLACK, Fault

pytestmark = pytest.mark.nats


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_mention_is_answered_by_the_backup_and_health_names_the_primary(
    nats_server: NatsServer,
    bridge: FakeBridge,
    tmp_path: Path,
    session: aiohttp.ClientSession,
    fault: Fault,
) -> None:
    async with (
        ScriptedOpenAIServer(default=fault.step) as primary,
        ScriptedOpenAIServer(default=reply("the backup says hi")) as backup,
    ):
        url = primary.base_url if fault.step is not None else f"http://127.0.0.1:{closed_port()}/v1"
        settings = settings_for(
            nats_server.url,
            tmp_path,
            llm={
                "default_provider": "primary",
                "fallback": ["backup"],
                "providers": {
                    "primary": {
                        "type": "openai",
                        "base_url": url,
                        "model": "p",
                        "timeout_seconds": PRIMARY_TIMEOUT,
                    },
                    "backup": {"type": "openai", "base_url": backup.base_url, "model": "b"},
                },
                "retry": {"attempts": 1},
            },
        )
        async with running(Service(settings)) as service:
            asked = time.monotonic()
            await bridge.chat("alice", "cynthia, are you there?")
            (command,) = await bridge.wait_for_commands(1, timeout=15)
            assert service.surface is not None
            assert service.surface.web is not None
            health_url = f"http://127.0.0.1:{service.surface.web.port}/health"
            async with session.get(health_url) as response:
                health = await response.json()
    assert "the backup says hi" in command.body["args"]["message"]
    # The primary costs at most its timeout: the backup is asked within it (plus slack), and
    # what follows is the backup's own latency and the send.
    (asked_backup,) = backup.completions
    assert asked_backup.received_at - asked <= PRIMARY_TIMEOUT + SLACK
    assert command.received_at > asked_backup.received_at
    assert health["components"]["providers"]["primary"]["state"] == fault.state
    assert health["components"]["providers"]["backup"]["state"] == "closed"
    assert any("provider primary" in reason for reason in health["reasons"])
    assert health["status"] == "degraded"  # the backup still answers
