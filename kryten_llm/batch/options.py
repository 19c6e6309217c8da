"""What a batch run was asked to do: one frozen, JSON-serialisable options object.

The CLI and the Python API both build a :class:`BatchOptions`; the runner reads nothing else.
It is stored with the run (``batch_runs.config``), so ``--resume`` continues a run with exactly
the template, system prompt, providers and output it was started with.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kryten_llm.errors import ConfigError

if TYPE_CHECKING:
    from kryten_llm.config import BatchConfig

# Options that may change when a run is resumed; everything else is the run's identity.
RESUMABLE_OVERRIDES = (
    "concurrency",
    "rate_limit",
    "rate_window",
    "stop_on_error",
    "no_log",
    "timeout_seconds",
    "checkpoint_seconds",
    "progress_interval",
    "stop_grace_seconds",
    "show",
    "quiet",
)
# The ``batch`` config section's keys (flag names) and the options they give defaults to.
CONFIG_KEYS = {
    "provider": "providers",
    "model": "models",
    "concurrency": "concurrency",
    "rate_limit": "rate_limit",
    "format": "output_format",
    "timeout": "timeout_seconds",
    "max_tokens": "max_tokens",
    "temperature": "temperature",
    "api_key_env": "api_key_env",
}
# A run id names files (the item log), so it must not reach outside their directory.
BATCH_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True, slots=True)
class BatchOptions:
    """Every knob of a batch run (see ``kryten-llm batch --help`` for each one).

    Attributes:
        input: the input file (None when rows are given directly to :func:`run_batch`).
        input_format: force the input format instead of guessing it from the extension.
        template: the prompt template over row columns; None: the ``prompt`` column.
        system: a system prompt sent with every request.
        providers: provider names from the config, types (``scripted``) or inline specs
            (``openai:http://127.0.0.1:8080/v1``); several compare models. Empty: the default.
        models: model names, one for all providers or one per provider.
        output: the output file (None: no file; the results stay in the store).
        output_format: csv, json or jsonl; None: from the output file's extension.
        concurrency: requests in flight at once.
        rate_limit: requests per ``rate_window`` for the whole run (None: unlimited).
        rate_window: the window of ``rate_limit`` in seconds (60: per minute).
        stop_on_error: stop at the first row that fails.
        batch_id: the run's id (new runs) or the run to resume.
        resume: continue run ``batch_id`` (or the latest unfinished run of ``input``).
        limit: only the first N rows.
        no_log: do not write the per-item JSONL log.
        expect_json: answers must be valid JSON.
        schema: a JSON Schema file answers must match (implies ``expect_json``).
        json_retries: extra tries after an answer that is not (valid) JSON.
        rows_per_request: rows packed into one request.
        pipeline: rows are chat lines (username, message) answered as the live bot would.
        force: ask again even rows answered by an earlier run.
        config: the kryten-llm config file providing the providers.
        db: the run store's SQLite file.
        timeout_seconds: budget of one item (its call, retries and waits).
        checkpoint_seconds: how often the output file is rewritten during the run.
        progress_interval: seconds between progress lines when stderr is not a terminal.
        max_tokens: cap on each answer's tokens (None: the provider's).
        temperature: sampling temperature (None: the provider's).
        stop_grace_seconds: how long requests in flight may finish after a stop.
        prompt_file: a file holding the template; archived by its hash beside the store.
        prompt_sha: the archived prompt's hash (set by the plan; recorded with the run).
        output_dir: write one JSON file per item here (``<id>.json``), merged across runs.
        id_column: the column naming each item's file (with ``output_dir``).
        sample: ask a random sample of N rows only.
        seed: the sample's random seed (chosen and recorded when not given).
        show: print each answer as it completes, even with an output file.
        quiet: do not print answers (the default prints them when there is no output).
        api_key_env: the variable holding the key of inline provider specs (default: the
            family's usual one, ``OPENAI_API_KEY`` / ``ANTHROPIC_API_KEY``).
    """

    input: str | None = None
    input_format: str | None = None
    template: str | None = None
    system: str | None = None
    providers: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    output: str | None = None
    output_format: str | None = None
    concurrency: int = 8
    rate_limit: float | None = None
    rate_window: float = 60.0
    stop_on_error: bool = False
    batch_id: str | None = None
    resume: bool = False
    limit: int | None = None
    no_log: bool = False
    expect_json: bool = False
    schema: str | None = None
    json_retries: int = 2
    rows_per_request: int = 1
    pipeline: bool = False
    force: bool = False
    config: str | None = None
    db: str = "batch.db"
    timeout_seconds: float = 600.0
    checkpoint_seconds: float = 30.0
    progress_interval: float = 5.0
    max_tokens: int | None = None
    temperature: float | None = None
    stop_grace_seconds: float = 5.0
    prompt_file: str | None = None
    prompt_sha: str | None = None
    output_dir: str | None = None
    id_column: str | None = None
    sample: int | None = None
    seed: int | None = None
    show: bool = False
    quiet: bool = False
    api_key_env: str | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.concurrency < 1:
            problems.append(("concurrency", "must be at least 1", "give a positive number"))
        if self.rate_limit is not None and self.rate_limit <= 0:
            problems.append(("rate_limit", "must be positive", "give requests per minute"))
        if self.rate_window <= 0:
            problems.append(("rate_window", "must be positive", "give seconds"))
        if self.rows_per_request < 1:
            problems.append(("rows_per_request", "must be at least 1", "give 1 or more"))
        if self.limit is not None and self.limit < 0:
            problems.append(("limit", "must not be negative", "give a row count"))
        if self.batch_id is not None and not BATCH_ID.fullmatch(self.batch_id):
            problems.append(
                (
                    "batch_id",
                    f"{self.batch_id!r} is not a valid batch id",
                    "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
                )
            )
        if self.stop_grace_seconds < 0:
            problems.append(("stop_grace_seconds", "must not be negative", "give seconds"))
        if self.json_retries < 0:
            problems.append(("json_retries", "must not be negative", "give 0 or more"))
        if self.pipeline and (self.expect_json or self.schema):
            problems.append(
                ("pipeline", "cannot be combined with the expect_json option", "drop one of them")
            )
        if self.pipeline and self.rows_per_request > 1:
            problems.append(
                (
                    "pipeline",
                    "cannot be combined with the rows_per_request option",
                    "drop one of them",
                )
            )
        if self.pipeline and self.template:
            problems.append(
                (
                    "pipeline",
                    "reads the username and message columns; a template is not used",
                    "drop the template option",
                )
            )
        problems += self._headline_problems()
        if problems:
            raise ConfigError(problems)

    def _headline_problems(self) -> list[tuple[str, str, str]]:
        """Problems of the prompt-file, per-item-file and sample options."""
        problems = []
        if self.prompt_file and self.template and not self.prompt_sha:
            problems.append(("prompt_file", "given with the template option", "give one of them"))
        if (self.output_dir is None) != (self.id_column is None):
            problems.append(
                (
                    "output_dir" if self.id_column else "id_column",
                    "per-item files need both the output_dir and the id_column option",
                    "give both, e.g. --output-dir answers --id-column id",
                )
            )
        if self.output_dir and self.output:
            problems.append(("output_dir", "given with the output option", "give one of them"))
        if self.sample is not None and self.sample < 1:
            problems.append(("sample", "must be at least 1", "give a row count"))
        if self.show and self.quiet:
            problems.append(("show", "given with the quiet option", "give one of them"))
        return problems

    @property
    def prints_answers(self) -> bool:
        """Whether answers are printed on stdout as they complete."""
        if self.output == "-":
            return False  # stdout is the output file
        return self.show or (not self.quiet and self.output is None and self.output_dir is None)

    @property
    def wants_json(self) -> bool:
        return self.expect_json or self.schema is not None

    def stored(self) -> dict[str, Any]:
        """The options as JSON-ready data, for the run store."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["providers"] = list(self.providers)
        data["models"] = list(self.models)
        return data

    def with_defaults(self, config: BatchConfig, given: Collection[str]) -> BatchOptions:
        """These options with the config's ``batch`` defaults for every option not ``given``.

        Args:
            config: the ``batch`` section.
            given: the option names given explicitly (flags, API keywords); they win.
        """
        changes: dict[str, Any] = {}
        for key, name in CONFIG_KEYS.items():
            value = getattr(config, key)
            if name in given or value is None or value == []:
                continue
            changes[name] = tuple(value) if isinstance(value, list) else value
        return dataclasses.replace(self, **changes) if changes else self

    @classmethod
    def from_stored(cls, data: dict[str, Any], **overrides: Any) -> BatchOptions:
        """Options of a stored run, with ``overrides`` (None values are ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["providers"] = tuple(values.get("providers", ()))
        values["models"] = tuple(values.get("models", ()))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
