"""The provider seam: request/response types, the ``Provider`` protocol and the type registry.

Every LLM backend implements one async method, :meth:`Provider.complete`, and registers its
``type`` name with :func:`register`; the service builds providers from config through
:func:`create_provider`, the same path a plugin would use. Providers share one
``aiohttp.ClientSession`` owned by the service. They raise only
:class:`kryten_llm.errors.ProviderError` subclasses, already classified retryable or fatal.

A backend that can hand its answer over while it is written is also a
:class:`StreamingProvider`: :meth:`~StreamingProvider.stream` yields :class:`Chunk` values, and
``streams`` says whether it does so now (its config's ``stream``). Wrappers that only
``complete`` (batch pacing) are simply not streaming providers.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import aiohttp

    from kryten_llm.config import ProviderConfig

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One turn of the conversation sent to the model."""

    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """What to ask. ``None`` fields fall back to the provider's configured values."""

    messages: tuple[ChatMessage, ...]
    max_tokens: int | None = None
    temperature: float | None = None
    timeout_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as the provider reported them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Completion:
    """An answer, with who gave it and what it cost."""

    text: str
    provider: str
    model: str
    latency_ms: float
    usage: Usage | None = None
    tried: tuple[str, ...] = ()  # providers that failed before this one answered
    streamed: bool = False  # the text arrived piece by piece (see StreamingProvider)


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a streamed answer.

    Attributes:
        text: the new text (possibly empty: a chunk may carry only ``model`` or ``usage``).
        model: the model that answers, when the server says so.
        usage: token counts, usually on the last chunk.
        whole: the server answered without streaming: ``text`` is the whole answer.
    """

    text: str = ""
    model: str | None = None
    usage: Usage | None = None
    whole: bool = False


class Provider(Protocol):
    """An LLM backend. ``name`` is its key in the config; ``type_name`` its registry key."""

    type_name: ClassVar[str]
    name: str
    model: str

    async def complete(self, request: CompletionRequest) -> Completion:
        """Answer ``request`` or raise a classified ``ProviderError``."""
        ...

    async def probe(self, timeout_seconds: float) -> str:
        """Check the provider can answer (list models, load the model...); describe it.

        Raises:
            ProviderError: it cannot.
        """
        ...


@runtime_checkable
class StreamingProvider(Provider, Protocol):
    """A provider that can hand its answer over while it is written."""

    streams: bool  # streaming is switched on for it (its config's ``stream``)

    def stream(self, request: CompletionRequest) -> AsyncGenerator[Chunk, None]:
        """The answer to ``request`` chunk by chunk; closing the iterator stops the model.

        Raises:
            ProviderError: classified as for :meth:`Provider.complete`, before or between
                chunks (a stream cut short is ProviderUnavailable).
        """
        ...


ProviderFactory = Callable[[str, "ProviderConfig", "aiohttp.ClientSession"], Provider]

_REGISTRY: dict[str, ProviderFactory] = {}


def register(type_name: str) -> Callable[[ProviderFactory], ProviderFactory]:
    """Class decorator: make a provider available as ``"type": type_name`` in the config."""

    def decorate(factory: ProviderFactory) -> ProviderFactory:
        _REGISTRY[type_name] = factory
        return factory

    return decorate


# The built-in providers, registered by importing them (as a plugin registers itself).
_BUILT_IN = (
    "kryten_llm.llm.anthropic",
    "kryten_llm.llm.local",
    "kryten_llm.llm.openai",
    "kryten_llm.llm.random",
    "kryten_llm.llm.scripted",
)


def _load_built_ins() -> None:
    for module in _BUILT_IN:
        import_module(module)  # a dict lookup once loaded


def provider_types() -> list[str]:
    """The registered type names, sorted."""
    _load_built_ins()
    return sorted(_REGISTRY)


def create_provider(name: str, config: ProviderConfig, session: aiohttp.ClientSession) -> Provider:
    """Build the provider called ``name`` from its config slice.

    Raises:
        KeyError: no provider type ``config.type`` is registered.
    """
    _load_built_ins()
    return _REGISTRY[config.type](name, config, session)
