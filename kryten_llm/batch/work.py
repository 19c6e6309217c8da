"""The units of work of a batch run: a row on its way to a model, and what one request carries.

The producer (:mod:`kryten_llm.batch.producer`) makes them, the workers hand them to an asking
strategy (:mod:`kryten_llm.batch.asking`), and the result sink logs them; this module is the
small vocabulary those three share.
"""

from __future__ import annotations

from dataclasses import dataclass

from kryten_llm.batch.targets import Target


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One input row, ready to ask: its prompt and the prompt's hash (for resume and reuse)."""

    row_key: int
    row_json: str
    prompt: str
    prompt_hash: str
    username: str = ""
    item_id: str = ""  # --id-column: names the item's file in --output-dir


@dataclass(frozen=True, slots=True)
class Unit:
    """What one worker sends as one request: one row, or several packed, to one model."""

    target: Target
    items: tuple[WorkItem, ...]
