"""End to end against the real llama.cpp server (llama-cpp-python's) serving SmolLM2-135M.

The server is the same kind operators point the ``openai`` provider at (llama.cpp, LM Studio,
Ollama): a separate process speaking the OpenAI API on 127.0.0.1. `make test` installs it with
the ``local`` extra (`make install-local`). The model invents facts, so only shape is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kryten_llm.cli import main
from kryten_llm.config import ProviderConfig
from kryten_llm.llm import ChatMessage, CompletionRequest
from kryten_llm.llm.local import bundled_model
from kryten_llm.llm.openai import OpenAIProvider
from kryten_llm.service import Service
from tests.bridge import FakeBridge
from tests.conftest import eventually, read_log, running, settings_for
from tests.natsserver import NatsServer, free_port

pytestmark = pytest.mark.e2e

ALIAS = "smollm2-135m"


@pytest.fixture(scope="module")
def llamacpp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m llama_cpp.server`` on a free port; its ``/v1`` URL once it lists the model."""
    model = bundled_model()
    assert model is not None, "SmolLM2 is not installed: run `make install-local`"
    port = free_port()
    log = tmp_path_factory.mktemp("llamacpp") / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(model),
                "--model_alias",
                ALIAS,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "2048",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_ready(base_url, process, log)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _wait_ready(base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama.cpp server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"llama.cpp server not ready in 60 s: {log.read_text()[-2000:]}")


async def test_model_auto_takes_the_model_the_server_has_loaded(llamacpp: str) -> None:
    config = ProviderConfig(type="openai", base_url=llamacpp, model="auto", max_tokens=16)
    async with aiohttp.ClientSession() as session:
        provider = OpenAIProvider("llamacpp", config, session)
        assert await provider.probe(10) == f"model auto -> {ALIAS}"
        result = await provider.complete(
            CompletionRequest(
                messages=(
                    ChatMessage("system", "Answer in a few words."),
                    ChatMessage("user", "Name a film."),
                ),
            )
        )
    assert result.text.strip()
    assert result.model == ALIAS
    assert result.usage is not None
    assert 0 < result.usage.completion_tokens <= 16


def test_providers_check_prints_the_server_as_ready(
    llamacpp: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "llm": {
                    "providers": {"llamacpp": {"base_url": llamacpp, "model": "auto"}},
                    "default_provider": "llamacpp",
                }
            }
        )
    )
    assert main(["providers", "check", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "llamacpp" in out
    assert f"model auto -> {ALIAS}" in out


@pytest.mark.nats
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_the_llamacpp_server_answers_a_mention_through_the_whole_bot(
    llamacpp: str, nats_server: NatsServer, bridge: FakeBridge, tmp_path: Path, stream: bool
) -> None:
    settings = settings_for(
        nats_server.url,
        tmp_path,
        llm={
            "providers": {
                "llamacpp": {
                    "type": "openai",
                    "base_url": llamacpp,
                    "model": "auto",
                    "max_tokens": 48,
                    "timeout_seconds": 60,
                    "stream": stream,
                }
            },
            "default_provider": "llamacpp",
        },
    )
    async with running(Service(settings)):
        await bridge.publish(
            "changeMedia",
            {
                "id": "abc",
                "title": "Plan 9 from Outer Space",
                "seconds": 4740,
                "duration": "01:19:00",
                "type": "yt",
                "currentTime": 0,
                "paused": False,
            },
        )
        await bridge.chat("bob", "this film is wonderfully bad")
        await bridge.chat("alice", "hey cynthia, what do you think of this film?")
        await bridge.wait_for_commands(1, timeout=90)

        def logged() -> list[dict[str, Any]]:
            return [r for r in read_log(tmp_path) if r["username"] == "alice"]

        await eventually(logged, 90)  # written once the whole answer is in
        (record,) = logged()
        await bridge.wait_for_commands(len(record["parts"]), timeout=30)
    texts = [command.body["args"]["message"] for command in bridge.commands]
    assert texts[0].strip()
    assert all(len(text) <= 240 and not text.startswith("/") for text in texts)
    assert record["answered"] is True
    assert record["provider"] == "llamacpp"
    assert record["model"] == ALIAS
    assert record["parts"] == texts
    if stream:
        # llama-cpp-python's server reports no token usage in a stream (stream_options is
        # ignored): the reply's timing is what the log has.
        assert record["streamed"] is True
        assert 0 < record["first_part_ms"] <= record["last_part_ms"]
    else:
        assert record["usage"]["completion_tokens"] > 0
