"""Turn an input row into the prompt text: ``--template "Summarise {title}: {body}"``.

Sits between the input readers and the runner. A template names columns in braces (``{{`` and
``}}`` are literal braces). Only plain column names may stand in braces: no attribute, index,
conversion or format spec of Python's ``str.format``, which would fail in mid-run or expose
Python internals. It is checked against the columns of the first row *before any request is
sent*, so a typo costs nothing but an error naming the variable and listing the columns the
file has. Without a template the row's ``prompt`` column is the prompt.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kryten_llm.config.templates import pieces
from kryten_llm.errors import ConfigError, TemplateError

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
        try:
            self._pieces = pieces(text)
        except TemplateError as exc:
            raise ConfigError(
                [("template", f"malformed template: {exc}", "write {column} around names")]
            ) from None
        names = [name for _, name in self._pieces if name is not None]
        self.variables = tuple(dict.fromkeys(names))

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
                "template",
                f"no template given and the input has no {DEFAULT_COLUMN!r} column",
                f"give the template option using the columns: {listed}",
            )
        else:
            names = ", ".join(repr(m) for m in missing)
            problem = (
                "template",
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
            return cell_text(value)
        try:
            return "".join(
                literal + ("" if name is None else cell_text(row[name]))
                for literal, name in self._pieces
            )
        except KeyError:
            self.check(row.keys())
            raise


def cell_text(value: Any) -> str:
    """A cell's value as prompt text (``None`` is empty)."""
    return "" if value is None else str(value)
