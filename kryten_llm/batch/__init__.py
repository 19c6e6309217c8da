"""Batch mode: many prompts from a file through the bot's providers, resumable, measured.

Modules, in pipeline order: :mod:`inputs` (streamed readers), :mod:`templates` (row to
prompt), :mod:`plan` (every check before the first request), :mod:`runner` (workers, pacing,
retries through the ProviderManager), :mod:`packing` / :mod:`jsoncheck` / :mod:`chatlines`
(``--rows-per-request``, ``--expect-json``, ``--pipeline``), :mod:`store` (SQLite run store),
:mod:`outputs` (atomic CSV/JSON/JSONL), :mod:`progress`, :mod:`estimate`, :mod:`api` and
:mod:`cli`.
"""

from __future__ import annotations

from kryten_llm.batch.api import estimate_batch, run_batch, run_batch_sync
from kryten_llm.batch.options import BatchOptions
from kryten_llm.batch.runner import BatchResult
from kryten_llm.batch.store import ModelSummary, RunStore

__all__ = [
    "BatchOptions",
    "BatchResult",
    "ModelSummary",
    "RunStore",
    "estimate_batch",
    "run_batch",
    "run_batch_sync",
]
