"""Helpers of the batch tests: settings, config files and the batch CLI as a real process.

The CLI runs as ``python -m kryten_llm.batch`` in a subprocess started with asyncio, so the
scripted OpenAI server of :mod:`tests.openai_server` keeps answering on the test's event loop
while the child process waits for it.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kryten_llm.config import Settings, load_settings

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
    """The environment of CLI children: ours, minus KRYTEN_LLM_* overrides, repo importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KRYTEN_LLM_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@dataclass(frozen=True, slots=True)
class CliResult:
    """What a CLI run printed and returned."""

    code: int
    stdout: str
    stderr: str


async def start_cli(*args: str, cwd: Path) -> asyncio.subprocess.Process:
    """Start ``python -m kryten_llm.batch ARGS`` in ``cwd``."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kryten_llm.batch",
        *args,
        cwd=cwd,
        env=child_env(),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def cli(*args: str, cwd: Path, stdin: str = "", timeout: float = 25.0) -> CliResult:
    """Run the batch CLI to the end and return its exit code and output."""
    process = await start_cli(*args, cwd=cwd)
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
