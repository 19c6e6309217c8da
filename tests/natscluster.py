"""Three nats-server processes on 127.0.0.1 joined by routes into one cluster with JetStream.

Each node has its own client port, route port, monitoring port and store; :meth:`start` waits
until every node reports the JetStream meta leader, so replicated buckets can be created at
once. ``kill(i)`` is an abrupt loss of one node (SIGKILL).
"""

from __future__ import annotations

import time

from tests.natsserver import ConfiguredNatsServer, free_port


class NatsCluster:
    """``size`` routed nats-servers with clustered JetStream; a context manager."""

    def __init__(self, size: int = 3, name: str = "kryten") -> None:
        routes = [free_port() for _ in range(size)]
        self.nodes: list[ConfiguredNatsServer] = []
        for i in range(size):
            others = ", ".join(
                f"nats-route://127.0.0.1:{port}" for j, port in enumerate(routes) if j != i
            )
            config = (
                f"server_name: n{i}\n"
                "jetstream { }\n"
                f"cluster {{ name: {name}, listen: 127.0.0.1:{routes[i]}, routes: [{others}] }}"
            )
            self.nodes.append(ConfiguredNatsServer(config=config))

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def __enter__(self) -> NatsCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, timeout: float = 30.0) -> None:
        """Start every node, then wait for the JetStream meta leader on each.

        Raises:
            RuntimeError: no meta leader within ``timeout`` seconds.
        """
        for node in self.nodes:
            node.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._leader(node) for node in self.nodes):
                return
            time.sleep(0.1)
        raise RuntimeError("the NATS cluster elected no JetStream meta leader")

    @staticmethod
    def _leader(node: ConfiguredNatsServer) -> str | None:
        try:
            meta = node._monitor("jsz").get("meta_cluster") or {}
        except OSError:
            return None
        leader = meta.get("leader")
        return leader if isinstance(leader, str) and leader else None

    def kill(self, index: int) -> None:
        """SIGKILL node ``index``."""
        self.nodes[index].kill()

    def close(self) -> None:
        for node in self.nodes:
            node.close()
