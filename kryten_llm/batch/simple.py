"""``batch_process`` and ``batch_from_csv``: batch mode in the shape ``llm`` users script.

For code written against simonw's ``llm`` and its proposed batch helpers::

    from kryten_llm.batch import batch_process, batch_from_csv

    for prompt, response in batch_process("gpt-4o-mini", prompts, concurrency=3, rate_limit=20):
        print(prompt, "->", response.text())

    batch_from_csv("gpt-4o-mini", "data.csv", template="Sum up {text}", output="out.csv",
                   rate_limit=30)

Both run the same engine as ``kryten-llm batch`` (:func:`~kryten_llm.batch.api.run_batch`:
store, resume, retries, rate limits) and return :class:`BatchResponses`, the (prompt,
response) pairs in input order (one per row and model). ``model`` is a configured provider's
name, an inline spec (``openai:http://127.0.0.1:1234/v1``), or a model name for the default
provider; None keeps the config's (or its ``batch`` section's) choice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kryten_llm.batch.api import run_batch
from kryten_llm.batch.readback import run_items
from kryten_llm.batch.runner import BatchResult
from kryten_llm.batch.storetypes import ItemStatus
from kryten_llm.config import Settings, load_settings
from kryten_llm.llm.base import provider_types


@dataclass(frozen=True, slots=True)
class Response:
    """One answer (or failure) of a batch item, as ``llm`` scripts read it.

    Attributes:
        prompt: the prompt sent.
        model: the answering target (``provider/model``).
        status: ``done`` or ``failed``.
        error: why it failed (None when answered).
        row: the input row's index.
    """

    prompt: str
    model: str
    status: str
    answer: str | None
    error: str | None
    row: int

    @property
    def ok(self) -> bool:
        """Answered."""
        return self.status == ItemStatus.DONE

    def text(self) -> str:
        """The answer's text ("" for a failed item: see :attr:`error`)."""
        return self.answer or ""


@dataclass(frozen=True, slots=True)
class BatchResponses:
    """The (prompt, :class:`Response`) pairs of a batch, in input order; ``result`` is the run."""

    result: BatchResult
    pairs: tuple[tuple[str, Response], ...]

    def __iter__(self) -> Iterator[tuple[str, Response]]:
        return iter(self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)


def batch_process(
    model: str | None,
    prompts: Iterable[str],
    *,
    concurrency: int | None = None,
    rate_limit: float | None = None,
    settings: Settings | None = None,
    **options: Any,
) -> BatchResponses:
    """Answer ``prompts`` with ``model``; returns the (prompt, response) pairs.

    Args:
        model: a provider name, an inline spec, or a model name of the default provider.
        prompts: the prompts.
        concurrency: requests in flight at once (None: the config's, else 8).
        rate_limit: requests per minute (None: unlimited).
        settings: the configuration; None loads ``config=`` (or the defaults).
        **options: any other :class:`~kryten_llm.batch.options.BatchOptions` field.

    Raises:
        ConfigError: a usage problem, a refused key, a model the server does not list.
    """
    return _run(list(prompts), model, settings, concurrency, rate_limit, options)


def batch_from_csv(
    model: str | None,
    path: str | Path,
    *,
    template: str | None = None,
    output: str | Path | None = None,
    concurrency: int | None = None,
    rate_limit: float | None = None,
    settings: Settings | None = None,
    **options: Any,
) -> BatchResponses:
    """Answer every row of a CSV (or any batch input) file, through ``template``.

    Args:
        model: as for :func:`batch_process`.
        path: the input file.
        template: the prompt over the columns, e.g. ``"Sum up {text}"`` (None: ``prompt``).
        output: a results file (.csv/.json/.jsonl), written atomically.
        concurrency, rate_limit, settings, **options: as for :func:`batch_process`.

    Raises:
        ConfigError: a template column the file lacks, and as for :func:`batch_process`.
        InputError: the file cannot be read.
    """
    options |= {"template": template, "output": None if output is None else str(output)}
    return _run(str(path), model, settings, concurrency, rate_limit, options)


def _run(
    source: list[str] | str,
    model: str | None,
    settings: Settings | None,
    concurrency: int | None,
    rate_limit: float | None,
    options: dict[str, Any],
) -> BatchResponses:
    settings = settings or load_settings(options.get("config"))
    given = {k: v for k, v in options.items() if v is not None}
    for name, value in (("concurrency", concurrency), ("rate_limit", rate_limit)):
        if value is not None:
            given[name] = value
    if model is not None:
        given |= _target(model, settings)
    result = asyncio.run(run_batch(source, settings=settings, **given))
    items = run_items(result.db, result.batch_id, limit=None, failed=False)
    pairs = tuple(
        (
            item.prompt or "",
            Response(
                item.prompt or "", item.model, item.status, item.response, item.error, item.row
            ),
        )
        for item in items
    )
    return BatchResponses(result, pairs)


def _target(model: str, settings: Settings) -> dict[str, tuple[str, ...]]:
    """``model`` as --provider (a configured name or an inline spec) or as --model."""
    if model in settings.llm.providers or model.partition(":")[0] in provider_types():
        return {"providers": (model,)}
    return {"models": (model,)}
