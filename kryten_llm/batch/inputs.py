"""Read batch input files row by row, in bounded memory, whatever their format.

The first stage of a batch run: a file becomes a stream of rows (``dict`` of column to value)
without ever being loaded whole, so a million-row file costs no more memory than a ten-row one.

======  ==============================================================================
.txt    one prompt per line (blank lines skipped), column ``prompt``
.csv    a header line, then one row per record (``csv.DictReader``)
.json   an array of objects, parsed incrementally (:func:`iter_json_array`)
.jsonl  one object per line (blank lines skipped)
.xlsx   the first sheet, header in the first row (optional ``xlsx`` extra: openpyxl)
======  ==============================================================================

Unreadable or malformed input is an :class:`~kryten_llm.errors.InputError` naming the file and
the place, because the operator has to fix the file (a missing optional package is a
:class:`~kryten_llm.errors.ConfigError`: the installation must be fixed).
"""

from __future__ import annotations

import csv
import importlib
import json
import zipfile
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import IO, Any

from kryten_llm.errors import ConfigError, InputError

Row = dict[str, Any]
FORMATS = ("txt", "csv", "json", "jsonl", "xlsx")
_CHUNK = 1 << 16
_WS = " \t\r\n"
_END = _WS + ",]"
_TAIL = 16  # characters at the end of the buffer where a decoding error may be a cut token
# The csv module refuses cells over 128 KiB by default; a long document in one cell is a fair
# prompt. The limit is process-wide; this one still stops a file with a runaway quote.
_CSV_FIELD_LIMIT = 16 * 1024 * 1024


def input_format(path: Path, explicit: str | None = None) -> str:
    """The format of ``path``: ``explicit`` if given, else from the extension.

    Raises:
        InputError: the extension is not one of :data:`FORMATS`.
    """
    fmt = (explicit or path.suffix.lstrip(".")).lower()
    if fmt == "ndjson":
        fmt = "jsonl"
    if fmt not in FORMATS:
        raise _bad(
            path,
            f"unknown input format {fmt or '(no extension)'!r}",
            f"use one of {', '.join('.' + f for f in FORMATS)}",
        )
    return fmt


def read_rows(path: Path, fmt: str | None = None, *, limit: int | None = None) -> Iterator[Row]:
    """Stream the rows of ``path``.

    Args:
        path: the input file.
        fmt: force a format instead of guessing it from the extension.
        limit: stop after this many rows.

    Yields:
        One dict per row, column name to value.

    Raises:
        InputError: the file cannot be read or is malformed (raised while iterating).
        ConfigError: reading .xlsx needs openpyxl, which is not installed.
    """
    kind = input_format(path, fmt)
    reader = {
        "txt": _txt,
        "csv": _csv,
        "json": _json,
        "jsonl": _jsonl,
        "xlsx": _xlsx,
    }[kind]
    try:
        yield from islice(reader(path), limit)
    except OSError as exc:
        raise _bad(path, f"cannot read ({exc.strerror or exc})", "check the input path") from None
    except UnicodeDecodeError as exc:
        raise _bad(path, f"not UTF-8 text ({exc.reason})", "save the file as UTF-8") from None


def count_rows(path: Path, fmt: str | None = None, *, limit: int | None = None) -> int:
    """How many rows :func:`read_rows` will yield (one streaming pass over the file)."""
    return sum(1 for _ in read_rows(path, fmt, limit=limit))


def _open(path: Path) -> IO[str]:
    # utf-8-sig: spreadsheet exports often start with a BOM that would stick to the first column.
    return path.open(encoding="utf-8-sig", newline="")


def _txt(path: Path) -> Iterator[Row]:
    with _open(path) as file:
        for line in file:
            text = line.rstrip("\r\n")
            if text.strip():
                yield {"prompt": text}


def _csv(path: Path) -> Iterator[Row]:
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    with _open(path) as file:
        reader = csv.DictReader(file)
        records = iter(reader)
        while True:
            try:
                record = next(records, None)
            except csv.Error as exc:
                raise _bad(path, f"line {reader.line_num}: {exc}") from None
            if record is None:
                return
            # Extra cells beyond the header land under None: keep them visible, not lost.
            extra = record.pop(None, None)
            row: Row = {k: ("" if v is None else v) for k, v in record.items()}
            if extra:
                row["_extra"] = extra
            yield row


def _jsonl(path: Path) -> Iterator[Row]:
    with _open(path) as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError as exc:
                raise _bad(path, f"line {number}: not JSON ({exc})") from None
            yield _object(value, path, f"line {number}")


def _json(path: Path) -> Iterator[Row]:
    with _open(path) as file:
        for index, value in enumerate(iter_json_array(file, str(path))):
            yield _object(value, path, f"element {index}")


def _object(value: Any, path: Path, where: str) -> Row:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        return {"prompt": value}
    raise _bad(path, f"{where}: expected an object (or a string), got {type(value).__name__}")


def _bad(path: Path | str, message: str, fix: str = "fix the input file") -> InputError:
    return InputError(f"{path}: {message} -> {fix}")


def iter_json_array(file: IO[str], name: str = "input", chunk_size: int = _CHUNK) -> Iterator[Any]:
    """The elements of a top-level JSON array, decoded one at a time from ``file``.

    Only the current element (plus one read chunk) is held in memory: the buffer is trimmed
    after each element, so a huge array streams in bounded memory.

    Args:
        file: a text file positioned at the array.
        name: the file's name, for error messages.
        chunk_size: characters read at a time.

    Raises:
        InputError: the text is not a JSON array.
    """
    decoder = json.JSONDecoder()
    buffer = ""
    pos = 0
    offset = 0  # characters of the file before the buffer
    eof = False

    def fill() -> bool:
        """Read one more chunk into the buffer; False at end of file."""
        nonlocal buffer, pos, offset, eof
        if eof:
            return False
        data = file.read(chunk_size)
        if not data:
            eof = True
            return False
        buffer = buffer[pos:] + data
        offset += pos
        pos = 0
        return True

    def skip_ws() -> bool:
        """Move past whitespace; False when the file ended first."""
        nonlocal pos
        while True:
            while pos < len(buffer) and buffer[pos] in _WS:
                pos += 1
            if pos < len(buffer):
                return True
            if not fill():
                return False

    if not skip_ws() or buffer[pos] != "[":
        raise _bad(name, "not a JSON array (expected '[' at the start)")
    pos += 1
    index = 0
    while True:
        if not skip_ws():
            raise _bad(name, "the JSON array is not closed (missing ']')")
        if buffer[pos] == "]" and index == 0:
            return
        while True:
            try:
                value, end = decoder.raw_decode(buffer, pos)
            except json.JSONDecodeError as exc:
                # An element cut by the chunk edge fails at the end of the buffer: read more and
                # try again. An error before that is in the file, and reading on would only pull
                # the rest of the file into memory.
                if _at_end(exc, buffer) and fill():
                    continue
                raise _bad(
                    name, f"element {index}: {exc.msg} (at offset {offset + exc.pos})"
                ) from None
            # A number cut by the chunk edge ("-1." of "-1.5e3") decodes as a shorter number:
            # a scalar counts only once a delimiter follows it.
            scalar = not isinstance(value, str | dict | list)
            if scalar and (end == len(buffer) or buffer[end] not in _END) and fill():
                continue
            break
        pos = end
        yield value
        index += 1
        if not skip_ws():
            raise _bad(name, "the JSON array is not closed (missing ']')")
        if buffer[pos] == ",":
            pos += 1
        elif buffer[pos] == "]":
            return
        else:
            raise _bad(name, f"after element {index - 1}: expected ',' or ']'")
        if pos > chunk_size:  # keep the buffer from growing with the file
            buffer, offset, pos = buffer[pos:], offset + pos, 0


def _at_end(exc: json.JSONDecodeError, buffer: str) -> bool:
    """Whether a decoding error may just mean "the data stops here" (more may follow).

    A cut token fails within a few characters of the end: ``tru``, ``-``, ``\\u00`` (an escape
    is at most 12 characters with its surrogate pair). An unterminated string is reported at
    its opening quote, however long it is, but is only ever found at the end of the data.
    """
    return exc.pos >= len(buffer) - _TAIL or exc.msg.startswith("Unterminated string")


def _xlsx(path: Path) -> Iterator[Row]:
    try:
        openpyxl: Any = importlib.import_module("openpyxl")
    except ImportError:
        raise ConfigError(
            [
                (
                    str(path),
                    ".xlsx input needs openpyxl, which is not installed",
                    "pip install 'kryten-llm[xlsx]' (or convert the sheet to CSV)",
                )
            ]
        ) from None
    invalid = getattr(openpyxl.utils.exceptions, "InvalidFileException", zipfile.BadZipFile)
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, invalid, KeyError) as exc:
        # An .xlsx is a zip of XML parts: a truncated or renamed file fails here.
        raise _bad(
            path,
            f"not a readable .xlsx workbook ({exc or type(exc).__name__})",
            "save it again as .xlsx from the spreadsheet, or export it as CSV",
        ) from None
    try:
        rows = book.worksheets[0].iter_rows(values_only=True)
        header = next(rows, None)
        if header is None:
            return
        names = [str(h) if h is not None else f"column{i + 1}" for i, h in enumerate(header)]
        for values in rows:
            if values is None or all(v is None for v in values):
                continue
            yield {
                name: ("" if value is None else value)
                for name, value in zip(names, values, strict=False)
            }
    finally:
        book.close()
