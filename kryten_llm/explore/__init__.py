"""The topic explorer: many unique items on a topic from several providers at once.

``kryten-llm explore`` runs N producers over the configured providers, drops exact and near
duplicates across all of them, checkpoints to an output folder it can resume from, and can
fill a :class:`FallbackPool` that the live bot draws on when no provider answers.

Stages, one module each: :mod:`.items` (parse items, trigram measures), :mod:`.canon` (the
canonical form and identifiers near duplicates are judged on), :mod:`.dedup` (exact and
near-duplicate index), :mod:`.digest` (what the prompt says is known), :mod:`.producer` (one
request loop), :mod:`.explorer` (orchestration and stop conditions), :mod:`.output`
(crash-safe files), :mod:`.progress` (stderr), :mod:`.cli` (the command), :mod:`.runs` and
:mod:`.web` (the explore page, standalone or on the bot's dashboard).
The fallback pools it fills live in :mod:`kryten_llm.pools`, below both the explorer and the
live bot.
"""

from __future__ import annotations

from kryten_llm.explore.dedup import DedupIndex, Verdict
from kryten_llm.explore.explorer import Explorer, RunState, StopReason
from kryten_llm.explore.output import OutputStore
from kryten_llm.explore.producer import ProducerStatus
from kryten_llm.explore.settings import ExploreSettings

__all__ = [
    "DedupIndex",
    "ExploreSettings",
    "Explorer",
    "OutputStore",
    "ProducerStatus",
    "RunState",
    "StopReason",
    "Verdict",
]
