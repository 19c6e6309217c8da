"""Command line: ``kryten-llm [run] [--config FILE] [--dry-run] [--validate-config] ...``.

The CLI is the boundary where domain errors become one line that says what to fix and a
non-zero exit code; nothing below it prints or exits.

Exit codes: 0 success, 2 invalid configuration or usage, 75 stopped to be restarted
(``kryten.lifecycle.group.restart``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kryten_llm import __version__
from kryten_llm.batch import cli as batch_cli
from kryten_llm.config import Settings, load_settings, redacted
from kryten_llm.errors import ConfigError, KrytenLLMError
from kryten_llm.explore import cli as explore_cli
from kryten_llm.logs import configure_logging

EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
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
    providers = sub.add_parser("providers", parents=[common], help="check the LLM providers")
    providers.add_argument("action", choices=["check"], help="probe every provider, print a table")
    providers.add_argument("--timeout", type=float, default=10.0, help="seconds per provider")
    demo = sub.add_parser(
        "demo",
        help="the bot in a simulated channel, with an embedded NATS server: nothing to set up",
    )
    demo.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    demo.add_argument("--nats", metavar="URL", help="use this NATS server instead of starting one")
    demo.add_argument("--config", type=Path, metavar="FILE", help="use this config's providers")
    demo.add_argument(
        "--provider",
        metavar="NAME",
        help="which provider answers: smollm2 or scripted (default: smollm2 when installed)",
    )
    demo.add_argument("--speed", type=float, default=1.0, help="scenario speed factor")
    demo.add_argument("--seed", type=int, help="seed for trigger probabilities")
    demo.add_argument(
        "--log-dir", type=Path, metavar="DIR", help="also write the response log there"
    )
    simulate = sub.add_parser(
        "simulate", help="only the simulated channel, against a running NATS server and bot"
    )
    simulate.add_argument("--nats", metavar="URL", required=True, help="the NATS server")
    simulate.add_argument("--channel", required=True, help="channel name, as the bot has it")
    simulate.add_argument("--domain", default="cytu.be", help="domain, as the bot has it")
    simulate.add_argument("--bot-username", default="CynthiaRothbot", help="the bot's account")
    simulate.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    simulate.add_argument("--speed", type=float, default=1.0, help="scenario speed factor")
    explore_cli.add_parser(sub)
    batch_cli.add_parser(sub)
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kryten-llm`` console script."""
    args = build_parser().parse_args(argv)
    command = args.command or "run"
    if command in ("demo", "simulate"):
        return _simulation(command, args)
    if command == "explore":
        return explore_cli.run(args)
    if command == "batch":
        return batch_cli.run(args)
    if args.validate_config:
        command = "validate-config"
    try:
        settings = _load(args)
    except ConfigError as exc:
        _print_config_error(exc, args.config)
        return EXIT_CONFIG
    if command == "validate-config":
        return _validate(settings, as_json=getattr(args, "json", False))
    if command == "providers":
        configure_logging("ERROR", "console")
        return asyncio.run(_check_providers(settings, args.timeout))
    if command == "logs":
        return _logs(settings, args)
    configure_logging(settings.logging.level, settings.logging.format)
    from kryten_llm.service import run_service

    try:
        return asyncio.run(run_service(settings))
    except KeyboardInterrupt:  # a second Ctrl+C while shutting down
        return 130
    except KrytenLLMError as exc:
        print(f"kryten-llm: {exc}", file=sys.stderr)
        return 1


def _simulation(command: str, args: argparse.Namespace) -> int:
    configure_logging("WARNING", "console")
    from kryten_llm.sim.demo import run_demo, run_simulate

    try:
        if command == "demo":
            return asyncio.run(
                run_demo(
                    duration=args.duration,
                    nats_url=args.nats,
                    config=args.config,
                    provider=args.provider,
                    speed=args.speed,
                    seed=args.seed,
                    log_dir=args.log_dir,
                )
            )
        return asyncio.run(
            run_simulate(
                nats_url=args.nats,
                channel=args.channel,
                domain=args.domain,
                bot_username=args.bot_username,
                duration=args.duration,
                speed=args.speed,
            )
        )
    except ConfigError as exc:
        _print_config_error(exc, getattr(args, "config", None))
        return EXIT_CONFIG
    except (FileNotFoundError, OSError) as exc:
        print(f"kryten-llm {command}: {exc}", file=sys.stderr)
        return 1


def _load(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if args.dry_run:
        overrides["dry_run"] = True
    settings = load_settings(args.config, **overrides)
    if args.log_level:
        settings.logging.level = args.log_level
    if args.log_format:
        settings.logging.format = args.log_format
    problems = startup_problems(settings)
    if problems:
        raise ConfigError(problems)
    return settings


def startup_problems(settings: Settings) -> list[tuple[str, str, str]]:
    """Checks that need the environment, not just the file: missing API keys.

    Only providers the bot will call (the default and the fallbacks) are checked; a spare
    provider without its key is shown as "no key" by the summary instead.
    """
    from kryten_llm.llm.local import local_problems

    problems = []
    in_use = set(settings.llm.chain)
    for name, provider in settings.llm.providers.items():
        if name in in_use and provider.type == "local":
            problems += [
                (f"llm.providers.{name}", "the local model cannot run", fix)
                for fix in local_problems(provider)
            ]
        if name in in_use and provider.api_key_env and provider.resolve_api_key() is None:
            problems.append(
                (
                    f"llm.providers.{name}.api_key_env",
                    f"environment variable {provider.api_key_env} is not set",
                    f"export {provider.api_key_env}=<your key> (or put it in the "
                    "EnvironmentFile of llm.service)",
                )
            )
    if settings.fallback.enabled:
        from kryten_llm.pipeline.fallback import FallbackPools

        try:
            FallbackPools(
                settings.fallback.pool_dir,
                [word.name for word in settings.triggers.words],
                settings.personalities,
            )
        except ConfigError as exc:
            problems += exc.problems
    return problems


async def _check_providers(settings: Settings, per_provider_seconds: float) -> int:
    """Probe every configured provider, print one line each; 0 when all are ready."""
    import aiohttp

    from kryten_llm.llm import create_provider
    from kryten_llm.llm.manager import ProviderManager

    async with aiohttp.ClientSession() as session:
        providers = {
            name: create_provider(name, cfg, session)
            for name, cfg in settings.llm.providers.items()
        }
        results = await ProviderManager(providers, settings.llm).probe_all(per_provider_seconds)
    chain = settings.llm.chain
    rows = [("provider", "type", "model", "status", "ms", "detail")]
    for r in results:
        role = " (default)" if r.name == chain[0] else " (fallback)" if r.name in chain else ""
        rows.append(
            (
                r.name + role,
                settings.llm.providers[r.name].type,
                r.model,
                "ready" if r.ok else "FAILED",
                f"{r.latency_ms:.0f}",
                r.detail,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:5], widths, strict=True)), row[5])
    return 0 if all(r.ok for r in results) else 1


def _logs(settings: Settings, args: argparse.Namespace) -> int:
    """``logs stats`` / ``logs plot``: read the response logs, print or write the summary."""
    from kryten_llm.ops.logstats import log_files, render_html, render_text, summarise

    files = log_files(args.files, settings.logging.response_log_dir)
    if not files:
        print(
            f"kryten-llm logs: no responses-*.jsonl in {settings.logging.response_log_dir}",
            file=sys.stderr,
        )
        return 1
    try:
        data = summarise(files).as_dict()
    except OSError as exc:
        print(f"kryten-llm logs: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    if args.action == "plot":
        try:
            args.output.write_text(render_html(data), encoding="utf-8")
        except OSError as exc:
            print(f"kryten-llm logs: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
            return 1
        print(f"wrote {args.output} ({data['records']} records)")
    elif args.json:
        print(json.dumps(data, indent=2))
    else:
        print(render_text(data))
    return 0


def _print_config_error(exc: ConfigError, path: Path | None) -> None:
    source = f" in {path}" if path else ""
    print(exc.report(f"kryten-llm: invalid configuration{source}:"), file=sys.stderr)


def _validate(settings: Settings, *, as_json: bool) -> int:
    if as_json:
        print(json.dumps(redacted(settings), indent=2))
        return 0
    for line in summary(settings):
        print(line)
    return 0


def summary(settings: Settings) -> list[str]:
    """A short, secret-free description of what the bot will do."""
    data = redacted(settings)
    lines = ["configuration OK"]
    lines.append("  nats:       " + ", ".join(settings.nats.servers))
    for channel in settings.channels:
        lines.append(f"  channel:    {channel.channel} on {channel.domain}")
    lines.append(f"  bot:        {settings.bot.username} as {settings.personality.character_name}")
    chain = settings.llm.chain
    for name, provider in data["llm"]["providers"].items():
        default = " (default)" if name == chain[0] else " (fallback)" if name in chain else ""
        key = "key set" if provider["api_key"] else "no key"
        where = {
            "openai": provider["base_url"],
            "anthropic": provider["base_url"],
            "local": provider["model_path"] or "SmolLM2",
        }.get(provider["type"], "in-process")
        lines.append(
            f"  provider:   {name}{default}: {provider['type']} {provider['model']} "
            f"at {where}, {key}"
        )
    words = ", ".join(w.name for w in settings.triggers.words) or "none"
    lines.append(
        f"  triggers:   mentions={'on' if settings.triggers.mentions else 'off'}, words: {words}"
    )
    rl = settings.ratelimit
    lines.append(
        f"  ratelimit:  {rl.global_per_minute}/min, {rl.global_per_hour}/h overall; "
        f"{rl.user_per_hour}/h and {rl.user_cooldown_seconds:g}s cooldown per user"
    )
    log_dir = settings.logging.response_log_dir if settings.logging.response_log else "off"
    lines.append(f"  logs:       level {settings.logging.level}, responses in {log_dir}")
    web = settings.web
    controls = "controls on" if web.token else "controls off (no web.token)"
    lines.append(
        f"  web:        http://{web.host}:{web.port}/ ({controls})"
        if web.enabled
        else "  web:        off"
    )
    lines.append(f"  dry run:    {'yes' if settings.dry_run else 'no'}")
    return lines


if __name__ == "__main__":
    sys.exit(main())
