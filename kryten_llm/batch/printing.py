"""Answers on the screen: printed as they complete, and read back by ``batch show``/``logs``.

``llm batch`` users expect to see the answers, not only a file: without ``-o`` (or with
``--show``) each answer is printed on stdout as it completes, flushed at once so a pipe sees it
too, while progress stays on stderr. ``batch show`` and ``batch logs`` print stored items the
same way (:func:`item_text`), so what scrolled by during a run reads the same afterwards.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

from kryten_llm.batch.storetypes import ItemResult, ItemStatus
from kryten_llm.batch.work import WorkItem


def item_text(
    *,
    row: int,
    model: str,
    status: str,
    prompt: str | None,
    response: str | None,
    error: str | None,
    run_id: str | None = None,
) -> str:
    """One item as text: a heading (run, row, model, status), the prompt quoted, the answer.

    A failed item shows its error instead of an answer.
    """
    where = f"{run_id} row {row}" if run_id else f"row {row}"
    lines = [f"## {where} · {model} · {status}"]
    if prompt is not None:
        lines += [f"> {line}" for line in (prompt.splitlines() or [""])]
    if status == ItemStatus.DONE:
        lines.append(response or "")
    else:
        lines.append(f"error: {error}")
    return "\n".join(lines) + "\n"


def printer(stream: TextIO | None = None) -> Callable[[ItemResult, WorkItem | None], None]:
    """A result sink observer that prints each result as it completes (flushed).

    Args:
        stream: where to print; stdout (looked up at each call) when None.
    """

    def show(result: ItemResult, item: WorkItem | None) -> None:
        out = stream or sys.stdout
        text = item_text(
            row=result.row_key,
            model=result.model,
            status=result.status.value,
            prompt=item.prompt if item is not None else None,
            response=result.response,
            error=result.error,
        )
        out.write(text + "\n")
        out.flush()

    return show
