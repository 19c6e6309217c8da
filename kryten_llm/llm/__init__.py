"""LLM providers behind one small protocol, registered by type name.

The built-in providers (``openai``, ``anthropic``, ``local``, ``scripted``, ``random``)
register through the same :func:`register` path a plugin would use, when a provider is first
built or listed.
The request and answer types load at once; the providers and the manager (which bring in
aiohttp) load on first use, so code that only speaks the types (the prompt builder, the
intake) starts fast. ``local`` needs the optional llama-cpp-python, imported only when a local
model is loaded.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from kryten_llm.llm.base import (
    ChatMessage,
    Chunk,
    Completion,
    CompletionRequest,
    Provider,
    StreamingProvider,
    Usage,
    create_provider,
    provider_types,
    register,
)

if TYPE_CHECKING:
    from kryten_llm.llm.anthropic import AnthropicProvider
    from kryten_llm.llm.health import CircuitState
    from kryten_llm.llm.local import LocalProvider
    from kryten_llm.llm.manager import ProviderManager, build_manager
    from kryten_llm.llm.openai import OpenAIProvider
    from kryten_llm.llm.probe import ProbeResult
    from kryten_llm.llm.random import RandomProvider
    from kryten_llm.llm.redact import Redactor
    from kryten_llm.llm.scripted import ScriptedProvider

_LAZY = {
    "AnthropicProvider": "kryten_llm.llm.anthropic",
    "CircuitState": "kryten_llm.llm.health",
    "LocalProvider": "kryten_llm.llm.local",
    "OpenAIProvider": "kryten_llm.llm.openai",
    "ProbeResult": "kryten_llm.llm.probe",
    "RandomProvider": "kryten_llm.llm.random",
    "ProviderManager": "kryten_llm.llm.manager",
    "Redactor": "kryten_llm.llm.redact",
    "ScriptedProvider": "kryten_llm.llm.scripted",
    "build_manager": "kryten_llm.llm.manager",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AnthropicProvider",
    "ChatMessage",
    "Chunk",
    "CircuitState",
    "Completion",
    "CompletionRequest",
    "LocalProvider",
    "OpenAIProvider",
    "ProbeResult",
    "Provider",
    "ProviderManager",
    "RandomProvider",
    "Redactor",
    "ScriptedProvider",
    "StreamingProvider",
    "Usage",
    "build_manager",
    "create_provider",
    "provider_types",
    "register",
]
