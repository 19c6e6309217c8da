"""LLM providers behind one small protocol, registered by type name.

Importing this package registers the built-in providers (``openai``, ``anthropic``, ``local``,
``scripted``)
through the same :func:`register` path a plugin would use. ``local`` needs the optional
llama-cpp-python, imported only when a local model is loaded.
"""

from __future__ import annotations

from kryten_llm.llm.anthropic import AnthropicProvider
from kryten_llm.llm.base import (
    ChatMessage,
    Completion,
    CompletionRequest,
    Provider,
    Usage,
    create_provider,
    provider_types,
    register,
)
from kryten_llm.llm.health import CircuitState
from kryten_llm.llm.local import LocalProvider
from kryten_llm.llm.manager import ProviderManager, build_manager
from kryten_llm.llm.openai import OpenAIProvider
from kryten_llm.llm.probe import ProbeResult
from kryten_llm.llm.redact import Redactor
from kryten_llm.llm.scripted import ScriptedProvider

__all__ = [
    "AnthropicProvider",
    "ChatMessage",
    "CircuitState",
    "Completion",
    "CompletionRequest",
    "LocalProvider",
    "OpenAIProvider",
    "ProbeResult",
    "Provider",
    "ProviderManager",
    "Redactor",
    "ScriptedProvider",
    "Usage",
    "build_manager",
    "create_provider",
    "provider_types",
    "register",
]
