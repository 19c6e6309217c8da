"""The bot as a real process, started one way for every test that needs one.

``python -m kryten_llm --config FILE`` from this checkout (``PYTHONPATH`` names it, so a child
started in another folder still runs the code under test), with no ``KRYTEN_LLM_*`` override
of the caller's environment leaking in. :func:`spawn_bot` only starts it (the caller owns the
pipes: exit codes, signals, a log file); :class:`BotProcess` also collects its JSON log lines
from stderr on a thread and stops it with SIGTERM, killing it only if it hangs.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent


def bot_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Our environment without ``KRYTEN_LLM_*`` overrides, the checkout importable, plus
    ``extra`` (a control token...)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KRYTEN_LLM_")}
    env["PYTHONPATH"] = str(ROOT)
    return env | dict(extra or {})


def spawn_bot(
    config: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdout: int | IO[bytes] = subprocess.DEVNULL,
    stderr: int | IO[bytes] = subprocess.PIPE,
) -> subprocess.Popen[bytes]:
    """Start ``kryten-llm --config config *args``; nothing is waited for.

    Args:
        config: the config file.
        args: more command-line arguments.
        env: variables set on top of :func:`bot_env`.
        cwd: its working folder (relative paths in the config resolve there).
        stdout: where its stdout goes (discarded by default).
        stderr: where its log lines go (a pipe by default).
    """
    return subprocess.Popen(
        [sys.executable, "-m", "kryten_llm", "--config", str(config), *args],
        cwd=cwd,
        stdout=stdout,
        stderr=stderr,
        env=bot_env(env),
    )


class BotProcess:
    """A bot process whose stderr (JSON log lines) a thread collects.

    Args:
        config: the config file.
        env: variables set on top of :func:`bot_env`.
    """

    def __init__(self, config: Path, *, env: Mapping[str, str] | None = None) -> None:
        self.proc = spawn_bot(config, env=env)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.lines.append(raw.decode(errors="replace"))

    @property
    def logged(self) -> list[dict[str, Any]]:
        """Every line so far as a record; a line that is not JSON as ``{"event": line}``."""
        records: list[dict[str, Any]] = []
        for line in list(self.lines):
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            records.append(record if isinstance(record, dict) else {"event": line})
        return records

    def events(self, name: str) -> list[dict[str, Any]]:
        """The log records whose ``event`` is ``name``."""
        return [record for record in self.logged if record.get("event") == name]

    def tail(self, count: int = 40) -> str:
        """The last ``count`` lines it logged, for a failure message."""
        return "".join(self.lines[-count:])

    async def stop(self) -> int:
        """SIGTERM, then the exit code (the process is killed if it hangs)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(self.proc.wait, 15)
        finally:
            self.close()

    def close(self) -> None:
        """Kill it if it still runs; join the reader and close the pipe."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
