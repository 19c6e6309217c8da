"""kryten-llm: an LLM chat bot for CyTube channels, as a NATS microservice of the Kryten ecosystem.

The live bot is :class:`kryten_llm.service.Service`; its configuration is
:class:`kryten_llm.config.Settings`, loaded with :func:`kryten_llm.config.load_settings`.
"""

from __future__ import annotations

# The same as pyproject.toml's version (a test checks): reading package metadata at import
# would cost every command a tenth of a second.
__version__ = "0.1.0"

__all__ = ["__version__"]
