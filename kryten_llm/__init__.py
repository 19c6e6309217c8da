"""kryten-llm: an LLM chat bot for CyTube channels, as a NATS microservice of the Kryten ecosystem.

The live bot is :class:`kryten_llm.service.Service`; its configuration is
:class:`kryten_llm.config.Settings`, loaded with :func:`kryten_llm.config.load_settings`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kryten-llm")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
