"""Memory: per-user and per-channel notes that survive restarts (issue 14, off by default).

A user tells the bot something about themselves ("remember that I like kung fu films") and the
bot recalls it in later prompts, quoted as untrusted text within the context budget; "forget
me" deletes everything stored about them. Notes live in one SQLite file
(:mod:`~kryten_llm.memory.store`); :mod:`~kryten_llm.memory.requests` recognises the requests,
:mod:`~kryten_llm.memory.recall` writes them into the prompt, :mod:`~kryten_llm.memory.live`
keeps the live bot's copy and does the disk work off the event loop,
:mod:`~kryten_llm.memory.commands` answers the operator, :mod:`~kryten_llm.memory.extract` is
the optional provider step.
"""

from kryten_llm.memory.commands import handle_memory_command
from kryten_llm.memory.recall import recall_block
from kryten_llm.memory.store import MemoryStore, Note, Scope, Source

__all__ = ["MemoryStore", "Note", "Scope", "Source", "handle_memory_command", "recall_block"]
