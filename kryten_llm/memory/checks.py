"""What the memory needs before the bot starts: a usable store and providers that exist.

Called by :func:`kryten_llm.checks.startup_problems` (so ``--validate-config`` and the bot's
start both report it) when ``memory.enabled`` is true. A store that cannot be opened, read or
written is a problem naming ``memory.path`` and the file, never a silent start without memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kryten_llm.errors import MemoryStoreError
from kryten_llm.memory.store import MemoryStore

if TYPE_CHECKING:
    from kryten_llm.config import Settings


def memory_problems(settings: Settings) -> list[tuple[str, str, str]]:
    """``(path, message, fix)`` for each reason the memory cannot work as configured."""
    memory = settings.memory
    problems = []
    known = set(settings.llm.providers)
    unknown = [name for name in memory.providers if name not in known]
    if unknown:
        problems.append(
            (
                "memory.providers",
                f"{unknown} are not in llm.providers ({', '.join(sorted(known))})",
                "list only configured providers",
            )
        )
    provider = memory.extraction.provider
    if memory.extraction.enabled and provider not in known:
        problems.append(
            (
                "memory.extraction.provider",
                f"{provider!r} is not in llm.providers",
                "name a configured provider",
            )
        )
    try:
        MemoryStore.open(memory.path).close()
    except MemoryStoreError as exc:
        problems.append(
            (
                "memory.path",
                f"the memory store {exc.path} cannot be used: {exc.reason}",
                "fix or move the file, or point memory.path at a writable file",
            )
        )
    return problems
