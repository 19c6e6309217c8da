"""The scripted provider: answers without a network, for tests, demos, dry runs and benchmarks.

With ``replies`` configured it cycles through them; otherwise it echoes the last user turn
(``"You said: …"``), which lets end-to-end tests see exactly what reached the model. An optional
``latency_ms`` simulates a slow model. It is cheap enough for latency benchmarks.

With ``model: "wordlist"`` it plays a list-making model for the topic explorer
(``kryten-llm explore``) without an API key: each answer is ten lines of two or three random
words from a word list (``replies`` when given, else the list shipped in
``kryten_llm/explore/wordlist.txt``), and about a quarter of the lines deliberately repeat an
earlier line, as is or as a case, punctuation or plural variant, so that duplicate checking
has work to do. The words are drawn from a generator seeded by the provider's name, so a run is
reproducible.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import zlib
from importlib import resources
from typing import TYPE_CHECKING, ClassVar

from kryten_llm.llm.base import Completion, CompletionRequest, Usage, register

if TYPE_CHECKING:
    import aiohttp

    from kryten_llm.config import ProviderConfig

_ECHO_LIMIT = 200
WORDLIST_MODEL = "wordlist"
_WORDLIST_ITEMS = 10
_WORDLIST_REPEAT = 0.25


def last_user_turn(request: CompletionRequest) -> str:
    """The content of the request's last user message ("" when it has none)."""
    return next((m.content for m in reversed(request.messages) if m.role == "user"), "")


def offline_completion(
    provider: str, model: str, request: CompletionRequest, text: str, started: float
) -> Completion:
    """The answer of a provider without a network (scripted, random): tokens estimated at
    four characters each, latency measured from ``started`` (monotonic)."""
    prompt_chars = sum(len(m.content) for m in request.messages)
    return Completion(
        text=text,
        provider=provider,
        model=model,
        latency_ms=(time.monotonic() - started) * 1000,
        usage=Usage(prompt_tokens=prompt_chars // 4, completion_tokens=len(text) // 4),
    )


def load_wordlist() -> list[str]:
    """The word list shipped with the topic explorer, one word a line."""
    text = resources.files("kryten_llm.explore").joinpath("wordlist.txt").read_text("utf-8")
    return [word for word in (line.strip() for line in text.splitlines()) if word]


class _WordListModel:
    """Random two- and three-word items, with deliberate repeats and near repeats."""

    def __init__(self, name: str, words: list[str]) -> None:
        self._words = words
        self._rng = random.Random(zlib.crc32(name.encode()))
        self._said: list[str] = []

    def answer(self) -> str:
        rng = self._rng
        lines = []
        for _ in range(_WORDLIST_ITEMS):
            if self._said and rng.random() < _WORDLIST_REPEAT:
                line = rng.choice(self._said)
                variant = rng.randrange(4)
                if variant == 1:
                    line = line.upper()
                elif variant == 2:
                    line = line.title() + "!"
                elif variant == 3:
                    line += "s"
            else:
                line = " ".join(rng.choice(self._words) for _ in range(rng.choice((2, 3))))
                self._said.append(line)
            lines.append(f"- {line}")
        return "\n".join(lines)


@register("scripted")
class ScriptedProvider:
    """Canned replies in rotation, or an echo of the last user message."""

    type_name: ClassVar[str] = "scripted"

    def __init__(self, name: str, config: ProviderConfig, session: aiohttp.ClientSession) -> None:
        self.name = name
        self.model = config.model
        self._delay = config.latency_ms / 1000.0
        self._wordlist: _WordListModel | None = None
        if config.model == WORDLIST_MODEL:
            self._wordlist = _WordListModel(name, list(config.replies) or load_wordlist())
            self._replies = None
        else:
            self._replies = itertools.cycle(config.replies) if config.replies else None

    async def probe(self, timeout_seconds: float) -> str:
        """Always ready: nothing to reach."""
        if self._wordlist is not None:
            return "word list"
        return "canned replies" if self._replies is not None else "echo"

    async def complete(self, request: CompletionRequest) -> Completion:
        """Answer after the configured latency."""
        started = time.monotonic()
        if self._delay:
            await asyncio.sleep(self._delay)
        if self._wordlist is not None:
            text = self._wordlist.answer()
        elif self._replies is not None:
            text = next(self._replies)
        else:
            last = last_user_turn(request)
            # The triggering message is the last line that is not an instruction to us.
            lines = [line for line in last.splitlines() if line.strip()]
            quoted = [line for line in lines if "«" in line]
            text = f"You said: {(quoted or lines or [''])[-1]}"[:_ECHO_LIMIT]
        return offline_completion(self.name, self.model, request, text, started)
