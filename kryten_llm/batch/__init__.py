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
Around them: :mod:`discovery` (models ``auto``/``all``, key check), :mod:`prices`,
:mod:`promptfile` (``--prompt-file`` and its archive), :mod:`itemfiles` (``--output-dir``),
:mod:`locking` (one writer per ``-o``), :mod:`printing` / :mod:`readback` / :mod:`actions`
(answers on screen, ``show``/``logs``/``list``/``status``/``cancel``) and :mod:`simple`
(``batch_process`` / ``batch_from_csv``).
"""

from __future__ import annotations

from kryten_llm.batch.api import estimate_batch, run_batch, run_batch_sync
from kryten_llm.batch.options import BatchOptions
from kryten_llm.batch.runner import BatchResult
from kryten_llm.batch.simple import BatchResponses, Response, batch_from_csv, batch_process
from kryten_llm.batch.store import RunStore
from kryten_llm.batch.storetypes import ModelSummary

__all__ = [
    "BatchOptions",
    "BatchResponses",
    "BatchResult",
    "ModelSummary",
    "Response",
    "RunStore",
    "batch_from_csv",
    "batch_process",
    "estimate_batch",
    "run_batch",
    "run_batch_sync",
]
