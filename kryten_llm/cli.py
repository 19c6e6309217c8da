"""Command line: ``kryten-llm [run] [--config FILE] [--dry-run] [--validate-config] ...``.

The CLI is the boundary where domain errors become one line that says what to fix and a
non-zero exit code; nothing below it prints or exits.

Exit codes (:mod:`kryten_llm.console`): 0 success, 1 failed, 2 invalid configuration or usage,
75 stopped to be restarted (``kryten.lifecycle.group.restart``), 130 interrupted.

Only what parsing needs is imported up front; each command imports its own machinery, so
``kryten-llm --version`` and the bot's start pay for nothing they do not use.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import sys
from collections.abc import Iterator, Sequence
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kryten_llm import __version__
from kryten_llm.console import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

if TYPE_CHECKING:
    from kryten_llm.config import Settings
    from kryten_llm.errors import ConfigError

# Subcommands with their own command line, imported only when asked for: ``kryten-llm
# --version`` or the bot itself never pay for batch's or explore's imports.
_LAZY = {
    "batch": ("kryten_llm.batch.cli", "run prompts from files through the providers (resumable)"),
    "explore": ("kryten_llm.explore.cli", "generate unique material on a topic with many models"),
    "memory": ("kryten_llm.memory.cli", "list or forget what the bot remembers about a user"),
    "selftest": ("kryten_llm.selftest.runner", "start everything locally and check that it works"),
    "demo": (
        "kryten_llm.sim.cli",
        "the bot in a simulated channel, with an embedded NATS server: nothing to set up",
    ),
    "simulate": (
        "kryten_llm.sim.cli",
        "only the simulated channel, against a running NATS server and bot",
    ),
}


_COMMANDS = frozenset({"run", "validate-config", "providers", "logs", *_LAZY})


def build_parser(full: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; ``full`` names the lazy subcommand whose options are needed."""
    parser = argparse.ArgumentParser(
        prog="kryten-llm",
        description="An LLM chat bot for CyTube channels, as a Kryten NATS service.",
    )
    parser.add_argument("--version", action="version", version=f"kryten-llm {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="JSON config file (see config.example.json); without it, built-in defaults "
        "plus KRYTEN_LLM_* environment variables",
    )
    common.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="override logging.level",
    )
    common.add_argument(
        "--log-format", choices=["auto", "json", "console"], help="override logging.format"
    )
    common.add_argument(
        "--dry-run",
        action="store_true",
        default=None,
        help="decide and log every reply, send nothing to the channel",
    )
    common.add_argument(
        "--validate-config",
        action="store_true",
        help="check the configuration, print a redacted summary and exit",
    )
    for action in common._actions:
        parser._add_action(action)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("run", parents=[common], help="run the bot (the default)")
    check = sub.add_parser("validate-config", parents=[common], help="same as --validate-config")
    check.add_argument("--json", action="store_true", help="print the whole redacted config")
    check.add_argument(
        "--explain",
        metavar="KEY",
        help="print the value in force at KEY (e.g. ratelimit.user_cooldown_seconds) and the "
        "layer it comes from",
    )
    providers = sub.add_parser("providers", parents=[common], help="check the LLM providers")
    providers.add_argument("action", choices=["check"], help="probe every provider, print a table")
    providers.add_argument("--timeout", type=float, default=10.0, help="seconds per provider")
    chosen = _LAZY[full][0] if full in _LAZY else None
    for name, (module, help_text) in _LAZY.items():
        if module != chosen:  # listed in --help; its options are read when it is the command
            sub.add_parser(name, help=help_text, add_help=False)
        elif name == full:  # adds every command of its module (demo and simulate share one)
            import_module(module).add_parser(sub)
    logs = sub.add_parser("logs", parents=[common], help="summarise the response logs")
    logs.add_argument("action", choices=["stats", "plot"], help="stats: print; plot: HTML report")
    logs.add_argument(
        "files",
        nargs="*",
        type=Path,
        metavar="FILE",
        help="response logs or folders (default: logging.response_log_dir)",
    )
    logs.add_argument("--json", action="store_true", help="stats as JSON")
    logs.add_argument(
        "--output", type=Path, default=Path("responses-report.html"), help="plot: the HTML file"
    )
    return parser


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No garbage collection while the bot's modules and settings are built.

    They are ~90,000 objects that live as long as the process, and the collector walking them
    again and again while they are made cost ~40 ms of the ~0.4 s from spawn to subscription.
    Afterwards they are frozen (``gc.freeze``: never walked again, so no full collection later
    pauses the running bot to look at them) and collection resumes as it was.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.freeze()
            gc.enable()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kryten-llm`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # The first word that names a command is the command (``logs stats explore`` is logs).
    command_word = next((a for a in argv if a in _COMMANDS), None)
    args = build_parser(command_word if command_word in _LAZY else None).parse_args(argv)
    command = args.command or "run"
    if command in _LAZY:
        return int(import_module(_LAZY[command][0]).run(args))
    from kryten_llm.errors import ConfigError, KrytenLLMError
    from kryten_llm.logs import configure_logging

    if args.validate_config:
        command = "validate-config"
    try:
        with _collector_paused():
            settings = _load(args)
    except ConfigError as exc:
        _print_config_error(exc, args.config)
        return EXIT_USAGE
    if command == "validate-config":
        try:
            return _validate(settings, args)
        except ConfigError as exc:
            _print_config_error(exc, args.config)
            return EXIT_USAGE
    if command == "providers":
        from kryten_llm.checks import check_providers

        configure_logging("ERROR", "console")
        return asyncio.run(check_providers(settings, args.timeout))
    if command == "logs":
        return _logs(settings, args)
    configure_logging(settings.logging.level, settings.logging.format)
    with _collector_paused():
        from kryten_llm.bus.natsload import import_nats

        import_nats(settings.nats.servers)  # aiohttp only once the bot listens
        from kryten_llm.service import run_service

    try:
        return asyncio.run(run_service(settings, config=args.config, cli=_cli_values(args)))
    except KeyboardInterrupt:  # a second Ctrl+C while shutting down
        return EXIT_INTERRUPTED
    except KrytenLLMError as exc:
        print(f"kryten-llm: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _load(args: argparse.Namespace) -> Settings:
    from kryten_llm.checks import startup_problems
    from kryten_llm.config import load_settings
    from kryten_llm.errors import ConfigError

    settings = load_settings(args.config, **_cli_values(args))
    problems = startup_problems(settings)
    if problems:
        raise ConfigError(problems)
    return settings


def _cli_values(args: argparse.Namespace) -> dict[str, Any]:
    """The flags that override the configuration, as settings values (kept over reloads)."""
    values: dict[str, Any] = {}
    if args.dry_run:
        values["dry_run"] = True
    logging = {
        key: value
        for key, value in (("level", args.log_level), ("format", args.log_format))
        if value
    }
    if logging:
        values["logging"] = logging
    return values


def _logs(settings: Settings, args: argparse.Namespace) -> int:
    """``logs stats`` / ``logs plot``: read the response logs, print or write the summary."""
    from kryten_llm.ops.logstats import log_files, render_html, render_text, summarise

    files = log_files(args.files, settings.logging.response_log_dir)
    if not files:
        print(
            f"kryten-llm logs: no responses-*.jsonl in {settings.logging.response_log_dir}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    try:
        data = summarise(files).as_dict()
    except OSError as exc:
        print(f"kryten-llm logs: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILED
    if args.action == "plot":
        try:
            args.output.write_text(render_html(data), encoding="utf-8")
        except OSError as exc:
            print(f"kryten-llm logs: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
            return EXIT_FAILED
        print(f"wrote {args.output} ({data['records']} records)")
    elif args.json:
        print(json.dumps(data, indent=2))
    else:
        print(render_text(data))
    return EXIT_OK


def _print_config_error(exc: ConfigError, path: Path | None) -> None:
    source = f" in {path}" if path else ""
    print(exc.report(f"kryten-llm: invalid configuration{source}:"), file=sys.stderr)


def _validate(settings: Settings, args: argparse.Namespace) -> int:
    """The summary (or the whole redacted config, or one key explained) and the overrides."""
    from kryten_llm.checks import summary
    from kryten_llm.config import redacted
    from kryten_llm.config.explain import explain
    from kryten_llm.config.layers import find_sources
    from kryten_llm.config.overrides import dotted

    sources = find_sources(args.config)
    if getattr(args, "explain", None):
        lines = explain(args.explain, settings, sources, _cli_values(args))
    elif getattr(args, "json", False):
        lines = [json.dumps(redacted(settings), indent=2)]
    else:
        lines = summary(settings)
        lines += [f"  layer:      {layer.name} {layer.path}" for layer in sources.files]
        if sources.overrides:
            lines.append(f"  overrides:  {sources.overrides_path} (runtime changes; reset clears)")
        for o in sources.overrides:
            by = f" (by {o.by}, {o.at})" if o.by else ""
            lines.append(f"    {dotted(o.path)} = {json.dumps(o.value)}{by}")
    for line in lines:
        print(line)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
