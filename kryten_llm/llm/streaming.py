"""Reading a streamed answer for the manager, and what the reader hands it to.

The manager asks a streaming provider (:class:`~kryten_llm.llm.base.StreamingProvider`) with
:func:`read_stream`: the growing text goes to a :class:`TextSink` after every chunk (the reply
path cuts, checks and sends parts from it), and the whole answer comes back as one
:class:`~kryten_llm.llm.base.Completion`, as from a provider that does not stream.

Why the sink says whether it is ``committed``: once a part of an answer has been handed on to be
sent, asking again (a retry, or the next provider) would start the answer over and say its first
sentence twice. So the manager retries and fails over a streamed answer only while its sink has
committed nothing; after that a failure ends the answer where it is (the reply path keeps what
was sent and logs the error).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeGuard

from kryten_llm.llm.base import Completion, StreamingProvider

if TYPE_CHECKING:
    from kryten_llm.llm.base import CompletionRequest, Provider, Usage


class TextSink(Protocol):
    """Takes a streamed answer while it is written."""

    @property
    def committed(self) -> bool:
        """Something of the answer was handed on to be sent: it cannot be asked again."""
        ...

    def take(self, text: str) -> bool:
        """The answer so far (a new attempt starts from scratch); False: stop reading."""
        ...


def streams(provider: Provider) -> TypeGuard[StreamingProvider]:
    """Whether ``provider`` can stream and streaming is switched on for it."""
    return isinstance(provider, StreamingProvider) and provider.streams


async def read_stream(
    provider: StreamingProvider,
    request: CompletionRequest,
    sink: TextSink,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> Completion:
    """Stream ``provider``'s answer to ``request`` into ``sink``; the answer as a Completion.

    The text is handed to the sink after every chunk that adds some, except an answer the
    server sent whole (it did not stream): the caller formats that like any other. When the
    sink says stop, the stream is closed (the model stops) and the text so far is returned.

    Raises:
        ProviderError: as the provider's :meth:`~StreamingProvider.stream` raises it.
    """
    started = clock()
    text, model = "", provider.model
    usage: Usage | None = None
    streamed = True
    async with contextlib.aclosing(provider.stream(request)) as chunks:
        async for chunk in chunks:
            model = chunk.model or model
            usage = chunk.usage or usage
            if not chunk.text:
                continue
            text += chunk.text
            if chunk.whole:
                streamed = False
            elif not sink.take(text):
                break
    return Completion(
        text=text,
        provider=provider.name,
        model=model,
        latency_ms=(clock() - started) * 1000,
        usage=usage,
        streamed=streamed,
    )
