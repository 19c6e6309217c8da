"""Helpers of the batch tests: settings, config files and the batch CLI as a real process.

The CLI runs as ``python -m kryten_llm.batch`` in a subprocess started with asyncio, so the
scripted OpenAI server of :mod:`tests.openai_server` keeps answering on the test's event loop
while the child process waits for it.
"""

from __future__ import annotations

import asyncio
import csv
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from kryten_llm.config import Settings, load_settings
from tests.botproc import bot_env
from tests.openai_server import LocalApi, ScriptedOpenAIServer, completion_body

ROOT = Path(__file__).resolve().parent.parent
FAST_RETRY = {"attempts": 2, "base_delay_seconds": 0.01, "max_delay_seconds": 0.05}


def batch_settings(tmp: Path, **llm: Any) -> Settings:
    """Settings whose response log lives in ``tmp`` and whose retries are quick."""
    section: dict[str, Any] = {"retry": FAST_RETRY} | llm
    return load_settings(None, llm=section, logging={"response_log_dir": str(tmp / "logs")})


def write_config(tmp: Path, **llm: Any) -> Path:
    """A config file for the CLI with the given ``llm`` section (quick retries by default)."""
    path = tmp / "config.json"
    section: dict[str, Any] = {"retry": FAST_RETRY} | llm
    path.write_text(json.dumps({"llm": section, "logging": {"response_log_dir": "logs"}}))
    return path


def child_env() -> dict[str, str]:
    """The environment of CLI children: ours, minus KRYTEN_LLM_* overrides and provider keys,
    repo importable."""
    env = bot_env()
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        env.pop(key, None)
    return env


@dataclass(frozen=True, slots=True)
class CliResult:
    """What a CLI run printed and returned."""

    code: int
    stdout: str
    stderr: str


async def start_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> asyncio.subprocess.Process:
    """Start ``python -m kryten_llm.batch ARGS`` in ``cwd`` (``env`` added to its environment)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kryten_llm.batch",
        *args,
        cwd=cwd,
        env=child_env() | (env or {}),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def cli(
    *args: str,
    cwd: Path,
    stdin: str = "",
    timeout: float = 25.0,
    env: dict[str, str] | None = None,
) -> CliResult:
    """Run the batch CLI to the end and return its exit code and output."""
    process = await start_cli(*args, cwd=cwd, env=env)
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin.encode()), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return CliResult(process.returncode, out.decode(), err.decode())


def read_output(path: Path) -> list[dict[str, Any]]:
    """The records of a batch output file, whatever its format."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".csv":
        return list(csv.DictReader(text.splitlines()))
    if path.suffix == ".json":
        data: list[dict[str, Any]] = json.loads(text)
        return data
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def last_user(body: dict[str, Any]) -> str:
    """The last user message of a recorded chat-completion request."""
    return str([m["content"] for m in body["messages"] if m["role"] == "user"][-1])


class SlowEchoServer(LocalApi):
    """An OpenAI-compatible server on 127.0.0.1 that answers each prompt after ``latency``
    seconds with ``You said: <prompt>`` and records when each answer was sent.

    ``answered`` holds ``(prompt, time.monotonic())`` per answer sent: a crash test compares
    those times with the moment it killed the batch to count answers the batch had received
    (or could have) and asked again after resuming.
    """

    def __init__(self, latency: float) -> None:
        super().__init__()
        self.latency = latency
        self.answered: list[tuple[str, float]] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._complete)
        app.router.add_get("/v1/models", self._models)  # batch asks it for model "auto"

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "slow-echo"}]})

    async def _complete(self, request: web.Request) -> web.Response:
        body = await request.json()
        prompt = last_user(body)
        await asyncio.sleep(self.latency)
        response = web.Response(
            body=completion_body(f"You said: {prompt}"), content_type="application/json"
        )
        await response.prepare(request)
        await response.write_eof()
        self.answered.append((prompt, time.monotonic()))
        return response


HEADLINES = (
    ("h1", "Markets rally as rates fall"),
    ("h2", "Local team wins the cup"),
    ("h3", "Storm closes coastal roads"),
)


def write_headlines(tmp: Path, rows: Sequence[tuple[str, str]] = HEADLINES) -> Path:
    """A headline list with ids, as headline-batch scripts keep them (``id,title``)."""
    path = tmp / "headlines.csv"
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["id", "title"])
        writer.writerows(rows)
    return path


def model_echo(body: dict[str, Any]) -> str:
    """A responder naming the model asked: ``"<model>: <last user message>"``."""
    return f"{body['model']}: {last_user(body)}"


def lm_studio(*models: str) -> ScriptedOpenAIServer:
    """A fake LM Studio: an OpenAI-compatible server listing ``models`` as loaded, answering
    each request with :func:`model_echo`."""
    return ScriptedOpenAIServer(responder=model_echo, models=models)


def asked(server: ScriptedOpenAIServer) -> list[tuple[str, str]]:
    """(model, last user message) of every chat completion the server received, in order."""
    return [(str(r.json["model"]), last_user(r.json)) for r in server.completions if r.json]


class GatedLMStudio(LocalApi):
    """A fake LM Studio listing ``models`` where the answers of ``held`` (after its first)
    wait until a request for any other model has arrived: two runs, one per model, are then
    certain to be writing at the same time, however slowly the second process starts.

    ``asked`` holds the model of each chat completion received, in order.
    """

    def __init__(self, *models: str, held: str) -> None:
        super().__init__()
        self.models = models
        self.held = held
        self.asked: list[str] = []
        self._other_arrived = asyncio.Event()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._complete)
        app.router.add_get("/v1/models", self._list)

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": m} for m in self.models]})

    async def _complete(self, request: web.Request) -> web.Response:
        body = await request.json()
        model = str(body["model"])
        self.asked.append(model)
        if model != self.held:
            self._other_arrived.set()
        elif self.asked.count(model) > 1:
            await self._other_arrived.wait()
        return web.Response(body=completion_body(model_echo(body)), content_type="application/json")
