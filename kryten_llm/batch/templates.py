"""Turn an input row into the prompt text: ``--template "Summarise {title}: {body}"``.

Sits between the input readers and the runner. A template names columns in braces (``{{`` and
``}}`` are literal braces); it is checked against the columns of the first row *before any
request is sent*, so a typo costs nothing but an error naming the variable and listing the
columns the file has. Without a template the row's ``prompt`` column is the prompt.
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
        ConfigError: the template itself is malformed (an unclosed brace, a positional field).
    """

    def __init__(self, text: str | None) -> None:
        self.text = text
        if text is None:
            self.variables: tuple[str, ...] = (DEFAULT_COLUMN,)
            return
        names: list[str] = []
        try:
            for _, field, _, _ in string.Formatter().parse(text):
                if field is None:
                    continue
                if not field or field.isdigit():
                    raise ValueError("fields must name a column, e.g. {title}")
                name = field.split(".")[0].split("[")[0]
                if name not in names:
                    names.append(name)
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
            return self.text.format_map({k: _text(v) for k, v in row.items()})
        except (KeyError, AttributeError, IndexError):
            self.check(row.keys())
            raise


def _text(value: Any) -> str:
    return "" if value is None else str(value)
