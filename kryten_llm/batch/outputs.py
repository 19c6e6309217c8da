"""Write batch results to CSV, JSON or JSONL, never leaving a torn file behind.

The last stage of a batch run. Output is generated *from the run store* (at checkpoints and at
the end), not appended as answers arrive: the store already guarantees one item per row and
model, so the file can never hold a duplicate, and a file is always written whole to a
temporary name in the same directory, flushed, fsynced and then renamed over the old one
(``os.replace`` is atomic on POSIX), so a crash at any moment leaves either the previous
complete file or the new complete file. ``-o -`` streams the records to stdout once, at the
end; a link is written through to its target and a device or FIFO (``/dev/stdout``) is written
in place, once, at the end (see :mod:`kryten_llm.files`).

Each output record is the input row's columns followed by the result columns
(:data:`RESULT_COLUMNS`, plus :data:`PIPELINE_COLUMNS` in ``--pipeline`` mode). A result
column whose name the input already uses is written as ``batch_<name>`` instead. The CSV header
names every input key of every row (:func:`input_keys`): rows of a JSONL file need not share
their keys, and a CSV row's cells beyond its header are kept as ``_extra``.

CSV cells are for spreadsheets, which run a cell starting with ``=``, ``+``, ``-`` or ``@``
(or a tab or carriage return before one) as a formula: a model's answer or an input cell could
be ``=HYPERLINK(...)``. In CSV output only, such a text cell is written with a leading single
quote (``'=HYPERLINK(...)``), which spreadsheets show as text; plain numbers such as ``-3`` or
``+1.5`` are left alone. JSON and JSONL keep every value exactly.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from kryten_llm.batch.storetypes import StoredItem
from kryten_llm.errors import ConfigError
from kryten_llm.files import atomic_open, is_special

STDOUT = "-"  # -o -: the records go to stdout
OUTPUT_FORMATS = ("csv", "json", "jsonl")
RESULT_COLUMNS = (
    "row",
    "model",
    "provider",
    "status",
    "response",
    "error",
    "attempts",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "latency_ms",
    "cached",
)
PIPELINE_COLUMNS = ("reason", "parts")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def output_format(path: Path, explicit: str | None = None) -> str:
    """The output format: ``explicit`` if given, else from ``path``'s extension.

    Raises:
        ConfigError: neither names csv, json or jsonl.
    """
    fmt = (explicit or path.suffix.lstrip(".")).lower()
    if fmt == "ndjson":
        fmt = "jsonl"
    if fmt not in OUTPUT_FORMATS:
        raise ConfigError(
            [
                (
                    "output",
                    f"cannot tell the output format of {path.name!r}",
                    "name the file .csv, .json or .jsonl, or give the output_format option",
                )
            ]
        )
    return fmt


def written_once(path: Path) -> bool:
    """Whether the output can only be written once, at the end (stdout, a device, a FIFO):
    checkpoints would repeat the records there."""
    return str(path) == STDOUT or is_special(path)


def result_columns(input_columns: Sequence[str], *, pipeline: bool) -> list[tuple[str, str]]:
    """(result field, output column name) pairs, renamed where the input has the name."""
    taken = set(input_columns)
    fields = RESULT_COLUMNS + (PIPELINE_COLUMNS if pipeline else ())
    return [(name, f"batch_{name}" if name in taken else name) for name in fields]


def input_keys(columns: Sequence[str], rows: Iterable[str]) -> list[str]:
    """``columns`` followed by every other key of the rows (JSON objects), in first-seen order.

    Args:
        columns: the columns of the first row.
        rows: each row as JSON text (the store's ``row_json``).
    """
    keys = list(columns)
    seen = set(keys)
    for text in rows:
        for key in json.loads(text):
            if key not in seen:
                seen.add(key)
                keys.append(key)
    return keys


def output_record(item: StoredItem, columns: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """One output record from a stored item (a ``batch_items`` row)."""
    record: dict[str, Any] = json.loads(item.row_json)
    extra = json.loads(item.extra) if item.extra else {}
    values = {
        "row": item.row_key,
        "model": item.model,
        "provider": item.provider,
        "status": item.status.value,
        "response": item.response,
        "error": item.error,
        "attempts": item.attempts,
        "prompt_tokens": item.prompt_tokens,
        "completion_tokens": item.completion_tokens,
        "cost_usd": item.cost_usd,
        "latency_ms": None if item.latency_ms is None else round(item.latency_ms, 3),
        "cached": item.cached,
        "reason": extra.get("reason"),
        "parts": extra.get("parts"),
    }
    for field, column in columns:
        record[column] = values[field]
    return record


def write_records(
    path: Path,
    fmt: str,
    records: Iterable[Mapping[str, Any]],
    *,
    header: Sequence[str],
) -> int:
    """Write ``records`` to ``path`` atomically; returns how many were written.

    Args:
        path: the final file; written as a temporary sibling first, then renamed.
        fmt: csv, json or jsonl.
        records: the records, streamed (never held all at once).
        header: the CSV columns, in order (ignored for JSON formats, which keep every key).
    """
    if str(path) == STDOUT:
        count = _write(sys.stdout, fmt, records, header)
        sys.stdout.flush()
        return count
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as file:
        return _write(file, fmt, records, header)


def _write(
    file: IO[str], fmt: str, records: Iterable[Mapping[str, Any]], header: Sequence[str]
) -> int:
    if fmt == "csv":
        return _csv(file, records, header)
    if fmt == "json":
        return _json(file, records)
    return _jsonl(file, records)


def _csv(file: IO[str], records: Iterable[Mapping[str, Any]], header: Sequence[str]) -> int:
    # "ignore": a key missing from the header is the caller's mistake, never a half-written file.
    writer = csv.DictWriter(file, fieldnames=list(header), extrasaction="ignore")
    writer.writeheader()
    count = 0
    for record in records:
        writer.writerow({k: _cell(v) for k, v in record.items()})
        count += 1
    return count


def _cell(value: Any) -> Any:
    """A CSV cell: lists and objects as JSON, None as empty, formulas defused (see above)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        value = json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def _json(file: IO[str], records: Iterable[Mapping[str, Any]]) -> int:
    count = 0
    file.write("[")
    for record in records:
        file.write(",\n" if count else "\n")
        file.write(json.dumps(record, ensure_ascii=False))
        count += 1
    file.write("\n]\n" if count else "]\n")
    return count


def _jsonl(file: IO[str], records: Iterable[Mapping[str, Any]]) -> int:
    count = 0
    for record in records:
        file.write(json.dumps(record, ensure_ascii=False) + "\n")
        count += 1
    return count
