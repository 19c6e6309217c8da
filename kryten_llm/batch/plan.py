"""Check everything a batch needs before the first request: the plan of a run.

Between the CLI/API and the runner. :func:`make_plan` resolves the options (from the run store
when resuming), peeks at the first input row for its columns, checks the template or the
pipeline's columns against them, resolves the providers, loads a JSON Schema and decides the
output file, so that every usage mistake is a :class:`~kryten_llm.errors.ConfigError` raised
before anything is sent or stored. For a new run it also fills the options not given from the
config's ``batch`` section, reads and archives ``--prompt-file``, makes every path absolute
(so ``--resume`` works from any folder) and fixes the ``--sample`` seed. Models ``auto`` and
``all`` are resolved afterwards, by :mod:`kryten_llm.batch.discovery` (it sends requests).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import random
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kryten_llm.batch.chatlines import REQUIRED_COLUMNS
from kryten_llm.batch.estimate import Estimate, estimate
from kryten_llm.batch.inputs import Row, count_rows, read_rows
from kryten_llm.batch.jsoncheck import JsonExpectation
from kryten_llm.batch.options import RESUMABLE_OVERRIDES, BatchOptions
from kryten_llm.batch.outputs import STDOUT, output_format
from kryten_llm.batch.promptfile import archive, prompt_hash, read_prompt
from kryten_llm.batch.store import RunStore, process_alive
from kryten_llm.batch.storetypes import RunInfo, RunStatus
from kryten_llm.batch.targets import Target, resolve_targets
from kryten_llm.batch.templates import PromptTemplate, cell_text
from kryten_llm.config import LLMConfig, Settings, load_settings
from kryten_llm.errors import ConfigError, InputError, RunExists
from kryten_llm.pipeline.prompt import system_prompt

RowSource = Callable[[], Iterator[Row]]


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """A checked batch, ready to run (see :func:`make_plan`)."""

    options: BatchOptions
    settings: Settings
    llm: LLMConfig
    targets: tuple[Target, ...]
    rows: RowSource
    columns: tuple[str, ...]
    template: PromptTemplate
    expectation: JsonExpectation | None
    output: Path | None
    output_format: str | None
    resume: RunInfo | None
    known_rows: int | None  # the row count when known without reading the input

    @property
    def template_hash(self) -> str:
        """The prompt's hash: names its archive and keys answers in per-item files."""
        return self.options.prompt_sha or prompt_hash(self.template.text or "{prompt}")

    @property
    def input_path(self) -> Path | None:
        return Path(self.options.input) if self.options.input else None

    def count_rows(self) -> int | None:
        """How many rows the run has (reads a file input once, streaming)."""
        if self.known_rows is not None:
            return self.known_rows
        path = self.input_path
        if path is None:
            return None
        rows = count_rows(path, self.options.input_format, limit=self.options.limit)
        return rows if self.options.sample is None else min(rows, self.options.sample)

    def system(self) -> str | None:
        """The system prompt sent with each request (the bot's, in pipeline mode)."""
        if self.options.pipeline:
            return system_prompt(self.settings.personality)
        return self.options.system

    def prompt_of(self, row: Mapping[str, Any]) -> str:
        """The user prompt of a row (the chat message in pipeline mode)."""
        if self.options.pipeline:
            return cell_text(row.get("message"))
        return self.template.render(row)

    def prompt_hash(self, row: Mapping[str, Any], prompt: str) -> str:
        """What identifies "the same question", so its stored answer may be reused.

        The mode (text, JSON with its schema, packed rows, pipeline), the system prompt, the
        prompt (and user), and the sampling options that change the answer: ``--max-tokens``
        and ``--temperature``. Options left unset add nothing, so their hashes stay those of
        runs stored before they were part of it.
        """
        opts = self.options
        if opts.pipeline:
            # The live reply path takes its sampling from the config, not from the options.
            parts = ["pipeline", self.system() or "", cell_text(row.get("username")), prompt]
        else:
            mode = "text"
            if self.expectation is not None:
                schema = json.dumps(self.expectation.schema, sort_keys=True)
                mode = "json:" + hashlib.sha256(schema.encode()).hexdigest()[:16]
            if opts.rows_per_request > 1:
                mode += ":packed"  # answered among other rows, by another instruction
            parts = [mode, opts.system or "", prompt]
            if opts.max_tokens is not None:
                parts.append(f"max_tokens={opts.max_tokens}")
            if opts.temperature is not None:
                parts.append(f"temperature={opts.temperature!r}")
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]

    def estimate(self) -> Estimate:
        """Tokens, cost and time, from one streamed pass over the rows."""
        opts = self.options
        system = self.system()
        return estimate(
            (self.prompt_of(row) for row in self.rows()),
            system=system,
            targets=self.targets,
            providers=self.llm.providers,
            rows_per_request=opts.rows_per_request,
            concurrency=opts.concurrency,
            rate_limit=opts.rate_limit,
            rate_window=opts.rate_window,
            max_tokens=opts.max_tokens,
        )


def make_plan(
    options: BatchOptions,
    *,
    rows: Iterable[str | Mapping[str, Any]] | None = None,
    settings: Settings | None = None,
    store: RunStore,
    overrides: Mapping[str, Any] | None = None,
    given: Collection[str] | None = None,
) -> BatchPlan:
    """Check a batch and resolve everything it needs.

    Args:
        options: what was asked.
        rows: the rows themselves (Python API); None reads ``options.input``.
        settings: the bot's settings; None loads ``options.config``.
        store: the run store (read only here, but for the prompt archive beside it).
        overrides: options given again on ``--resume`` (only :data:`RESUMABLE_OVERRIDES`).
        given: the options given explicitly; the others take the config's ``batch``
            defaults. None: every option is as the caller wants it (no defaults applied).

    Raises:
        ConfigError: anything that must be fixed before the batch can run.
    """
    resume: RunInfo | None = None
    if options.resume:
        resume = _find_run(options, store)
        given = {k: v for k, v in (overrides or {}).items() if k in RESUMABLE_OVERRIDES}
        db = options.db
        options = BatchOptions.from_stored(resume.config, **given)
        options = _replace(options, resume=True, batch_id=resume.id, db=db)
    elif options.batch_id and store.get_run(options.batch_id) is not None:
        raise RunExists(options.batch_id)
    if settings is None:
        settings = load_settings(options.config)
    if resume is None:
        if given is not None:
            options = options.with_defaults(settings.batch, given)
        options = _new_run(options, store)
    source, known, first = _source(options, rows)
    columns = tuple(first) if first is not None else ()
    if resume is not None and "columns" in resume.config:
        columns = tuple(resume.config["columns"])
    template = PromptTemplate(options.template)
    if first is not None:
        if options.pipeline:
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise ConfigError(
                    [
                        (
                            "pipeline",
                            f"the input has no {', '.join(repr(m) for m in missing)} column",
                            f"give chat lines with username and message columns "
                            f"(the input has: {', '.join(columns) or '(none)'})",
                        )
                    ]
                )
        else:
            template.check(columns)
        if options.id_column and options.id_column not in columns:
            raise ConfigError(
                [
                    (
                        "id_column",
                        f"{options.id_column!r} is not a column of the input",
                        f"use one of the columns: {', '.join(columns) or '(none)'}",
                    )
                ]
            )
    llm, targets = resolve_targets(settings, options.providers, options.models, options.api_key_env)
    expectation = None
    if options.wants_json:
        expectation = JsonExpectation(Path(options.schema) if options.schema else None)
    output = Path(options.output) if options.output else None
    fmt = None
    if output is not None:
        fmt = (options.output_format or "jsonl") if options.output == STDOUT else None
        fmt = fmt or output_format(output, options.output_format)
    return BatchPlan(
        options=options,
        settings=settings,
        llm=llm,
        targets=tuple(targets),
        rows=source,
        columns=columns,
        template=template,
        expectation=expectation,
        output=output,
        output_format=fmt,
        resume=resume,
        known_rows=known,
    )


def _new_run(options: BatchOptions, store: RunStore) -> BatchOptions:
    """A new run's options as stored: absolute paths, the prompt file read and archived,
    the sample's seed chosen."""
    changes: dict[str, Any] = {}
    for name in ("input", "output", "schema", "output_dir", "prompt_file"):
        value = getattr(options, name)
        if value and value != STDOUT:
            changes[name] = os.path.abspath(value)
    if options.prompt_file and not options.prompt_sha:
        text = read_prompt(Path(options.prompt_file))
        archive(text, store.path.resolve().parent)
        changes |= {"template": text, "prompt_sha": prompt_hash(text)}
    if options.sample is not None and options.seed is None:
        changes["seed"] = random.SystemRandom().randrange(2**31)
    return dataclasses.replace(options, **changes)


def _find_run(options: BatchOptions, store: RunStore) -> RunInfo:
    if options.batch_id:
        run = store.run(options.batch_id)
    elif options.input:
        latest = store.latest_resumable(os.path.abspath(options.input))
        latest = latest or store.latest_resumable(str(Path(options.input)))
        if latest is None:
            raise ConfigError(
                [
                    (
                        "resume",
                        f"no unfinished batch of {options.input} in {store.path}",
                        "give the batch_id option (see kryten-llm batch list)",
                    )
                ]
            )
        run = latest
    else:
        raise ConfigError(
            [("resume", "which batch?", "give the batch_id option or the input file")]
        )
    if run.status in (RunStatus.RUNNING, RunStatus.CANCELLING) and process_alive(run.pid):
        raise ConfigError(
            [("resume", f"batch {run.id} is still running (pid {run.pid})", "wait or cancel it")]
        )
    return run


def _source(
    options: BatchOptions, rows: Iterable[str | Mapping[str, Any]] | None
) -> tuple[RowSource, int | None, Row | None]:
    """A function streaming the rows from the start (or the ``--sample`` of them), the count
    when known cheaply, and the first row (for its columns)."""
    source, known, first = _all_rows(options, rows)
    if options.sample is None:
        return source, known, first
    size, seed = options.sample, options.seed
    return (
        (lambda: _sampled(source(), size, seed)),
        None if known is None else min(known, size),
        first,
    )


def _sampled(rows: Iterator[Row], size: int, seed: int | None) -> Iterator[Row]:
    """A uniform random sample of ``size`` rows (reservoir sampling), in input order; the
    same ``seed`` picks the same rows."""
    rng = random.Random(seed)
    kept: list[tuple[int, Row]] = []
    for index, row in enumerate(rows):
        if index < size:
            kept.append((index, row))
            continue
        slot = rng.randrange(index + 1)
        if slot < size:
            kept[slot] = (index, row)
    for _, row in sorted(kept, key=lambda pair: pair[0]):
        yield row


def _all_rows(
    options: BatchOptions, rows: Iterable[str | Mapping[str, Any]] | None
) -> tuple[RowSource, int | None, Row | None]:
    if rows is None:
        if not options.input:
            raise ConfigError([("input", "no input given", "name an input file")])
        path = Path(options.input)
        if not path.is_file():
            raise InputError(f"{path}: no such file -> check the input path")
        first = next(read_rows(path, options.input_format, limit=1), None)
        return (lambda: read_rows(path, options.input_format, limit=options.limit)), None, first
    if isinstance(rows, Sequence):
        known = len(rows) if options.limit is None else min(len(rows), options.limit)
        first = next(_normalised(rows, 1), None)
        return (lambda: _normalised(rows, options.limit)), known, first
    # A one-shot iterable (a generator): peek at the first row without losing it; it can
    # be streamed once only.
    iterator = iter(rows)
    head = list(itertools.islice(iterator, 1))
    used = False

    def once() -> Iterator[Row]:
        nonlocal used
        if used:
            raise ConfigError(
                [("rows", "an iterator can be read once only", "pass a list to read it again")]
            )
        used = True
        return _normalised(itertools.chain(head, iterator), options.limit)

    return once, None, next(_normalised(head, 1), None)


def _normalised(rows: Iterable[str | Mapping[str, Any]], limit: int | None) -> Iterator[Row]:
    for row in itertools.islice(rows, limit):
        yield {"prompt": row} if isinstance(row, str) else dict(row)


def _replace(options: BatchOptions, **changes: Any) -> BatchOptions:
    return dataclasses.replace(options, **changes)
