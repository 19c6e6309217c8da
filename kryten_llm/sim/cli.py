"""The ``demo`` and ``simulate`` commands: their options, and running them.

Imported by :mod:`kryten_llm.cli` only when one of them is the command (like ``batch``), so
the bot itself never imports the simulated channel.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from kryten_llm.console import EXIT_FAILED, EXIT_USAGE

_HELP = {
    "demo": "the bot in a simulated channel, with an embedded NATS server: nothing to set up",
    "simulate": "only the simulated channel, against a running NATS server and bot",
}


def add_parser(sub: Any) -> None:
    """Add ``demo`` and ``simulate`` to the command line's subparsers."""
    demo = sub.add_parser("demo", help=_HELP["demo"])
    demo.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    demo.add_argument("--nats", metavar="URL", help="use this NATS server instead of starting one")
    demo.add_argument("--config", type=Path, metavar="FILE", help="use this config's providers")
    demo.add_argument(
        "--provider",
        metavar="NAME",
        help="which provider answers: smollm2 or scripted (default: the best model at hand: "
        "a local OpenAI-compatible server, SmolLM2, canned lines)",
    )
    demo.add_argument("--speed", type=float, default=1.0, help="scenario speed factor")
    demo.add_argument("--seed", type=int, help="seed for the scenario and trigger probabilities")
    demo.add_argument(
        "--log-dir", type=Path, metavar="DIR", help="also write the response log there"
    )
    simulate = sub.add_parser("simulate", help=_HELP["simulate"])
    simulate.add_argument("--nats", metavar="URL", required=True, help="the NATS server")
    simulate.add_argument("--channel", required=True, help="channel name, as the bot has it")
    simulate.add_argument("--domain", default="cytu.be", help="domain, as the bot has it")
    simulate.add_argument("--bot-username", default="CynthiaRothbot", help="the bot's account")
    simulate.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    simulate.add_argument("--speed", type=float, default=1.0, help="scenario speed factor")


def run(args: argparse.Namespace) -> int:
    """Run ``demo`` or ``simulate`` as parsed by :func:`add_parser`."""
    command = args.command
    from kryten_llm.errors import ConfigError
    from kryten_llm.logs import configure_logging
    from kryten_llm.sim.demo import run_demo, run_simulate

    configure_logging("WARNING", "console")
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
        source = f" in {args.config}" if getattr(args, "config", None) else ""
        print(exc.report(f"kryten-llm: invalid configuration{source}:"), file=sys.stderr)
        return EXIT_USAGE
    except (FileNotFoundError, OSError) as exc:
        print(f"kryten-llm {command}: {exc}", file=sys.stderr)
        return EXIT_FAILED
