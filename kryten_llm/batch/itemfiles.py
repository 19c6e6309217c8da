"""``--output-dir DIR --id-column COL``: one JSON file per item, merged across runs and models.

The layout headline-batch scripts use. Each item (input row) has ``DIR/<id>.json``: the row's
columns as they were first written, and under ``llm_models`` every answer it ever got, keyed
by model name and then by prompt hash (the 12 hex characters that also name the prompt's
archive, :mod:`kryten_llm.batch.promptfile`)::

    {"id": "h1", "title": "...",
     "llm_models": {"model-a": {"3f2a9c1d0b7e": {"response": "...", "answered_at": "...",
                                                 "batch_id": "...", "provider": "..."}}}}

An answer is merged in under a lock (one lock file per folder, ``.kryten-llm.lock``, held for
the read-modify-write) and the file is replaced atomically, so runs of other models or other
prompts writing at the same time never lose each other's answers, and a crash leaves the old
file or the new. A re-run skips items whose file already holds an answer for that model and
prompt hash; deleting one file asks that item again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from kryten_llm.batch.storetypes import ItemResult, ItemStatus
from kryten_llm.batch.work import WorkItem
from kryten_llm.files import atomic_write, dump_json, exclusive_lock, read_json_object

log = structlog.get_logger(__name__)

MODELS_KEY = "llm_models"
LOCK_NAME = ".kryten-llm.lock"
_SAFE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9 ._@+=,-]{0,199}")


def file_name(item_id: str) -> str:
    """The file of item ``item_id`` (``<id>.json``).

    Raises:
        ValueError: the id cannot name a file safely (empty, a path, a leading dot...).
    """
    if not _SAFE_ID.fullmatch(item_id) or item_id.endswith((" ", ".")):
        raise ValueError(
            f"id {item_id!r} cannot name a file: use letters, digits, '_', '-', '.', spaces "
            "(not first or last), at most 200 characters"
        )
    return f"{item_id}.json"


class ItemFiles:
    """The per-item files of one folder, for one prompt.

    Args:
        folder: the output folder (created if missing).
        prompt_hash: the prompt's hash, the key under each model.
    """

    def __init__(self, folder: Path, prompt_hash: str) -> None:
        self.folder = folder
        self.prompt_hash = prompt_hash
        folder.mkdir(parents=True, exist_ok=True)
        self._lock = folder / LOCK_NAME

    def answered(self, item_id: str) -> set[str]:
        """The model names that already answered this prompt for the item."""
        data = read_json_object(self.folder / file_name(item_id))
        models = data.get(MODELS_KEY) if data is not None else None
        if not isinstance(models, dict):
            return set()
        return {
            name
            for name, answers in models.items()
            if isinstance(answers, dict) and self.prompt_hash in answers
        }

    def write(self, item_id: str, row: dict[str, Any], model: str, answer: dict[str, Any]) -> None:
        """Merge one answer into the item's file, under the folder lock, atomically.

        Args:
            item_id: the item (its file name without ``.json``).
            row: the input row; its columns start a new file (an existing file keeps its own).
            model: the model name.
            answer: what is kept under ``llm_models[model][prompt hash]``.

        Raises:
            ValueError: the id cannot name a file, or the existing file is not a JSON object
                (it is left as it is).
            OSError: the file cannot be written.
        """
        path = self.folder / file_name(item_id)
        with exclusive_lock(self._lock):
            data = read_json_object(path)
            if data is None:
                if path.exists():
                    raise ValueError(f"{path} is not a JSON object; left as it is")
                data = {k: v for k, v in row.items() if k != MODELS_KEY}
            models = data.setdefault(MODELS_KEY, {})
            if not isinstance(models, dict):
                raise ValueError(f"{path}: {MODELS_KEY} is not an object; left as it is")
            answers = models.setdefault(model, {})
            if not isinstance(answers, dict):
                answers = models[model] = {}
            answers[self.prompt_hash] = answer
            atomic_write(path, dump_json(data))


def recorder(
    files: ItemFiles, model_names: Mapping[str, str], batch_id: str, *, parse_json: bool
) -> Callable[[ItemResult, WorkItem | None], None]:
    """A result sink observer writing each answered item into its file.

    Args:
        files: the folder's files.
        model_names: model name by target label.
        batch_id: the run, recorded with each answer.
        parse_json: also keep the answer parsed (``--expect-json``), under ``parsed``.
    """

    def record(result: ItemResult, item: WorkItem | None) -> None:
        if result.status is not ItemStatus.DONE or item is None or not item.item_id:
            return  # a failure is not an answer: the next run asks again
        answer: dict[str, Any] = {
            "response": result.response,
            "answered_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "batch_id": batch_id,
            "provider": result.model,
        }
        model = model_names.get(result.model, result.model)
        try:
            if parse_json and result.response is not None:
                answer["parsed"] = json.loads(result.response)
            files.write(item.item_id, json.loads(item.row_json), model, answer)
        except (OSError, ValueError) as exc:
            log.error("batch_item_file_failed", item=item.item_id, error=str(exc))

    return record
