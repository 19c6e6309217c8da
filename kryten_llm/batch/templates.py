"""Turn an input row into the prompt text: ``--template "Summarise {title}: {body}"``.

Sits between the input readers and the runner. A template names columns in braces (``{{`` and
``}}`` are literal braces). Only plain column names may stand in braces: no attribute, index,
conversion or format spec of Python's ``str.format``, which would fail in mid-run or expose
Python internals. It is checked against the columns of the first row *before any request is
sent*, so a typo costs nothing but an error naming the variable and listing the columns the
file has. Without a template the row's ``prompt`` column is the prompt.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from typing import Any

from kryten_llm.errors import ConfigError

DEFAULT_COLUMN = "prompt"


class PromptTemplate:
    """A prompt template over row columns.

    Args:
        text: the template, e.g. ``"Translate to French: {sentence}"``; ``None`` means the
            value of the ``prompt`` column.

    Raises:
        ConfigError: the template itself is malformed (an unclosed brace, a positional field,
            an attribute or index, a conversion or a format spec).
    """

    def __init__(self, text: str | None) -> None:
        self.text = text
        self._pieces: list[tuple[str, str | None]] = []  # (literal text, column or None)
        if text is None:
            self.variables: tuple[str, ...] = (DEFAULT_COLUMN,)
            return
        names: list[str] = []
        try:
            for literal, field, spec, conversion in string.Formatter().parse(text):
                if field is not None:
                    _check_field(field, spec, conversion)
                    if field not in names:
                        names.append(field)
                self._pieces.append((literal, field))
        except ValueError as exc:
            raise ConfigError(
                [("--template", f"malformed template: {exc}", "write {column} around names")]
            ) from None
        self.variables = tuple(names)

    def check(self, columns: Iterable[str]) -> None:
        """Fail if a variable is not one of ``columns``.

        Raises:
            ConfigError: naming each missing variable and listing the available columns.
        """
        available = list(columns)
        missing = [name for name in self.variables if name not in available]
        if not missing:
            return
        listed = ", ".join(available) or "(none)"
        if self.text is None:
            problem = (
                "--template",
                f"no template given and the input has no {DEFAULT_COLUMN!r} column",
                f"give --template using the columns: {listed}",
            )
        else:
            names = ", ".join(repr(m) for m in missing)
            problem = (
                "--template",
                f"variable {names} is not a column of the input",
                f"use one of the columns: {listed}",
            )
        raise ConfigError([problem])

    def render(self, row: Mapping[str, Any]) -> str:
        """The prompt for ``row`` (``None`` values become empty text).

        Raises:
            ConfigError: a row lacks a column that the first row had.
        """
        if self.text is None:
            value = row.get(DEFAULT_COLUMN)
            if value is None:
                self.check(row.keys())
            return _text(value)
        try:
            return "".join(
                literal + ("" if name is None else _text(row[name]))
                for literal, name in self._pieces
            )
        except KeyError:
            self.check(row.keys())
            raise


def _check_field(field: str, spec: str | None, conversion: str | None) -> None:
    """Only a plain column name may stand in braces.

    Python's format mini-language would let a template read attributes (``{title.__class__}``),
    index values, convert them or apply a format spec that fails on text (``{title:d}``) in the
    middle of a run; none of that is needed to put a column's text in a prompt.

    Raises:
        ValueError: saying what is not allowed (the caller makes it a ConfigError).
    """
    if not field or field.isdigit():
        raise ValueError("fields must name a column, e.g. {title}")
    if "." in field or "[" in field:
        raise ValueError(f"{{{field}}}: only a column name may stand in braces (no . or [])")
    if conversion is not None:
        raise ValueError(f"{{{field}!{conversion}}}: conversions are not supported")
    if spec:
        raise ValueError(f"{{{field}:{spec}}}: format specs are not supported")


def _text(value: Any) -> str:
    return "" if value is None else str(value)
