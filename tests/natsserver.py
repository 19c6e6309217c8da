"""Tests use the embedded nats-server of the package (kept here as the tests' import path).

:class:`ConfiguredNatsServer` adds what only tests and benchmarks need: the HTTP monitoring
port (``/varz`` counts slow consumers) and server settings from a config file, such as a small
``max_pending`` that cuts off a client which stops reading its socket.
"""

from __future__ import annotations

import json
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from kryten_llm.sim.natsserver import NatsServer, free_port, nats_server_binary

__all__ = ["ConfiguredNatsServer", "NatsServer", "free_port", "nats_server_binary"]


class ConfiguredNatsServer(NatsServer):
    """A nats-server with a monitoring port and extra config-file lines (``max_pending: 1MB``)."""

    def __init__(self, port: int | None = None, *, config: str = "") -> None:
        super().__init__(port)
        self.http_port = free_port()
        self._config = config
        self._conf_dir = tempfile.TemporaryDirectory(prefix="kryten-llm-nats-conf-")

    def varz(self) -> dict[str, Any]:
        """The server's ``/varz`` (``slow_consumers``, ``in_msgs``, ``out_msgs`` ...)."""
        return self._monitor("varz")

    def connz(self) -> dict[str, Any]:
        """The server's ``/connz``: one entry per client, with its ``pending_bytes``."""
        return self._monitor("connz")

    def _monitor(self, endpoint: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.http_port}/{endpoint}"
        with urllib.request.urlopen(url, timeout=5) as response:
            result: dict[str, Any] = json.load(response)
            return result

    def _extra_args(self) -> list[str]:
        """The config file (written now) and the monitoring port."""
        conf = Path(self._conf_dir.name) / "server.conf"
        conf.write_text(self._config + "\n")
        return ["-c", str(conf), "-m", str(self.http_port)]

    def close(self) -> None:
        """Stop the server, remove its store and config."""
        super().close()
        self._conf_dir.cleanup()
