"""The scripted provider: answers without a network, for tests, demos, dry runs and benchmarks.

With ``replies`` configured it cycles through them; otherwise it echoes the last user turn
(``"You said: …"``), which lets end-to-end tests see exactly what reached the model. An optional
``latency_ms`` simulates a slow model. It is cheap enough for latency benchmarks.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import TYPE_CHECKING, ClassVar

from kryten_llm.llm.base import Completion, CompletionRequest, Usage, register

if TYPE_CHECKING:
    import aiohttp

    from kryten_llm.config import ProviderConfig

_ECHO_LIMIT = 200


@register("scripted")
class ScriptedProvider:
    """Canned replies in rotation, or an echo of the last user message."""

    type_name: ClassVar[str] = "scripted"

    def __init__(self, name: str, config: ProviderConfig, session: aiohttp.ClientSession) -> None:
        self.name = name
        self.model = config.model
        self._delay = config.latency_ms / 1000.0
        self._replies = itertools.cycle(config.replies) if config.replies else None

    async def probe(self, timeout_seconds: float) -> str:
        """Always ready: nothing to reach."""
        return "canned replies" if self._replies is not None else "echo"

    async def complete(self, request: CompletionRequest) -> Completion:
        """Answer after the configured latency."""
        started = time.monotonic()
        if self._delay:
            await asyncio.sleep(self._delay)
        if self._replies is not None:
            text = next(self._replies)
        else:
            last = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
            # The triggering message is the last line that is not an instruction to us.
            lines = [line for line in last.splitlines() if line.strip()]
            quoted = [line for line in lines if "«" in line]
            text = f"You said: {(quoted or lines or [''])[-1]}"[:_ECHO_LIMIT]
        prompt_chars = sum(len(m.content) for m in request.messages)
        return Completion(
            text=text,
            provider=self.name,
            model=self.model,
            latency_ms=(time.monotonic() - started) * 1000,
            usage=Usage(prompt_tokens=prompt_chars // 4, completion_tokens=len(text) // 4),
        )
