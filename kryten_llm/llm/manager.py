"""Choose the provider for a reply and keep the call inside the reply's time budget.

This is the seam between the pipeline and the providers: the worker asks the manager, never a
provider directly. Today it calls the configured default provider once, bounded by the time left
in the reply's deadline; fallback chains, retries and circuit breakers belong here too.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from kryten_llm.errors import ProviderTimeout

if TYPE_CHECKING:
    from kryten_llm.llm.base import Completion, CompletionRequest, Provider


class ProviderManager:
    """Routes completion requests to providers by name."""

    def __init__(self, providers: Mapping[str, Provider], default: str) -> None:
        if default not in providers:
            raise KeyError(default)
        self._providers = dict(providers)
        self._default = default

    @property
    def providers(self) -> Mapping[str, Provider]:
        return self._providers

    @property
    def default(self) -> Provider:
        return self._providers[self._default]

    async def complete(self, request: CompletionRequest, *, deadline: float) -> Completion:
        """Ask the default provider, giving it at most the time left until ``deadline``.

        Args:
            request: the prompt.
            deadline: ``time.monotonic()`` value by which the answer is needed.

        Raises:
            ProviderError: the provider failed, or no time was left to ask it.
        """
        provider = self.default
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ProviderTimeout(provider.name, "no time left in the reply deadline")
        timeout = remaining
        if request.timeout_seconds is not None:
            timeout = min(timeout, request.timeout_seconds)
        bounded = type(request)(
            messages=request.messages,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            timeout_seconds=timeout,
        )
        return await provider.complete(bounded)
