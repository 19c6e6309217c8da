"""Tests use the embedded nats-server of the package (kept here as the tests' import path)."""

from kryten_llm.sim.natsserver import NatsServer, free_port, nats_server_binary

__all__ = ["NatsServer", "free_port", "nats_server_binary"]
