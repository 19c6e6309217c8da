"""Batch mode: many prompts from a file through the bot's providers, resumable, measured.

Modules, in pipeline order: :mod:`inputs` (streamed readers), :mod:`templates` (row to
prompt), :mod:`plan` (every check before the first request), :mod:`runner` (the life of a
run), :mod:`producer` (rows to units of work), :mod:`asking` (plain, packed and chat-line
strategies over the ProviderManager, paced by :mod:`ratelimit`; :mod:`usage` accounts
tokens and cost), :mod:`packing` / :mod:`jsoncheck` / :mod:`chatlines` (``--rows-per-request``,
``--expect-json``, ``--pipeline``), :mod:`sink` (answers committed as they arrive, item log,
output file), :mod:`housekeeping` (cancel polling, checkpoints), :mod:`store` /
:mod:`storedb` / :mod:`storetypes` (SQLite run store and its typed rows), :mod:`outputs`
(atomic CSV/JSON/JSONL), :mod:`progress`, :mod:`estimate`, :mod:`api` and :mod:`cli`.
"""

from __future__ import annotations

from kryten_llm.batch.api import estimate_batch, run_batch, run_batch_sync
from kryten_llm.batch.options import BatchOptions
from kryten_llm.batch.runner import BatchResult
from kryten_llm.batch.store import RunStore
from kryten_llm.batch.storetypes import ModelSummary

__all__ = [
    "BatchOptions",
    "BatchResult",
    "ModelSummary",
    "RunStore",
    "estimate_batch",
    "run_batch",
    "run_batch_sync",
]
