"""``kryten-llm demo`` and ``kryten-llm simulate``: the bot alive in a channel, locally.

``demo`` starts, in one process tree: an embedded nats-server (or uses ``--nats``), the
simulated channel playing the bundled scenario, and the bot itself with the bundled demo
config, answering through SmolLM2 in-process when the ``local`` extra and the model are
installed, otherwise through the scripted provider (or the providers of ``--config``). The
terminal shows the channel as a transcript with the bot's decisions. It stops on Ctrl+C,
SIGTERM or after ``--duration`` seconds, and always stops the nats-server it started.

``simulate`` runs only the simulated channel against a NATS server, for trying a bot that runs
elsewhere (under systemd, say) without CyTube.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import json
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

import nats

from kryten_llm.config import Settings, load_settings
from kryten_llm.console import on_stop_signals
from kryten_llm.errors import ConfigError
from kryten_llm.llm.local import local_problems
from kryten_llm.service import Service
from kryten_llm.sim.channel import SimulatedChannel
from kryten_llm.sim.natsserver import NatsServer
from kryten_llm.sim.script import CYCLE_SECONDS, MEDIA, SCENARIO, USERS
from kryten_llm.sim.transcript import Transcript

SWITCH_HINT = (
    "The scripted provider answers with canned lines. For a real model in-process:\n"
    "  make install-local   (llama-cpp-python and SmolLM2-135M), then run the demo again;\n"
    "or --config FILE whose llm.providers points at any OpenAI-compatible server\n"
    "(llama.cpp, LM Studio, Ollama, OpenRouter...); see config.example.json."
)
LOCAL_NOTE = (
    "SmolLM2-135M runs in this process: small and fast, and it invents facts freely.\n"
    "--config FILE uses your own providers instead."
)


def demo_settings(
    nats_url: str, config: Path | None, log_dir: Path | None, provider: str | None = None
) -> Settings:
    """The bundled demo config (or ``config``), pointed at ``nats_url``.

    ``provider`` picks one of the config's providers; by default the bundled config answers
    with SmolLM2 when it can run here, otherwise with the scripted provider.
    """
    overrides: dict[str, Any] = {}
    if config is None:
        bundled = importlib.resources.files("kryten_llm.sim").joinpath("demo_config.json")
        overrides = json.loads(bundled.read_text(encoding="utf-8"))
    settings = load_settings(config, **overrides)
    if provider is not None:
        if provider not in settings.llm.providers:
            known = ", ".join(sorted(settings.llm.providers))
            raise ConfigError([("--provider", f"no provider {provider!r}", f"use one of {known}")])
        settings.llm.default_provider = provider
    elif config is None and not local_problems(settings.llm.providers["smollm2"]):
        settings.llm.default_provider = "smollm2"
    settings.nats.servers = [nats_url]
    settings.web.port = 0  # any free port: a demo must not fail on a busy one (URL printed)
    settings.logging.response_log = log_dir is not None
    if log_dir is not None:
        settings.logging.response_log_dir = log_dir
    return settings


async def play(channel: SimulatedChannel, transcript: Transcript | None, speed: float) -> None:
    """Play the scenario in a loop until cancelled."""
    uid = 0
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        for line in SCENARIO:
            delay = started + line.at / speed - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if line.action == "userlist":
                await channel.userlist(USERS)
            elif line.action == "media":
                uid += 1
                media_id, seconds = MEDIA[line.text]
                await channel.change_media(uid, media_id, line.text, seconds)
                if transcript is not None:
                    transcript.event(f"now playing: {line.text}")
            elif line.action == "chat":
                await channel.chat(line.user, line.text)
            elif line.action == "pm":
                await channel.pm(line.user, line.text, channel.bot_username)
        rest = started + CYCLE_SECONDS / speed - loop.time()
        if rest > 0:
            await asyncio.sleep(rest)


async def _until_stopped(duration: float | None) -> None:
    """Wait for SIGINT/SIGTERM or ``duration`` seconds, whichever comes first."""
    stop = asyncio.Event()
    with on_stop_signals(lambda _: stop.set()), contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), duration)


async def run_demo(
    *,
    duration: float | None = None,
    nats_url: str | None = None,
    config: Path | None = None,
    provider: str | None = None,
    speed: float = 1.0,
    seed: int | None = None,
    log_dir: Path | None = None,
    out: IO[str] | None = None,
    until: Callable[[], Awaitable[None]] | None = None,
) -> int:
    """Run the whole demo; returns the exit code.

    Args:
        duration: stop after this many seconds (None: on Ctrl+C/SIGTERM only).
        nats_url: an existing NATS server; None starts an embedded one.
        config: a config file to use instead of the bundled demo config.
        provider: which of the config's providers answers (default: see demo_settings).
        speed: scenario speed factor (2.0 plays it twice as fast).
        seed: seed for trigger probabilities.
        log_dir: write the response log there (None: no response log file).
        out: where the transcript goes (stdout by default).
        until: an awaitable factory that ends the demo (tests); overrides duration/signals.
    """
    with contextlib.ExitStack() as stack:
        if nats_url is None:
            server = stack.enter_context(NatsServer())
            nats_url = server.url
        settings = demo_settings(nats_url, config, log_dir, provider)
        transcript = Transcript(out, bot=settings.bot.username)
        answering = settings.llm.providers[settings.llm.default_provider]
        transcript.banner(
            f"kryten-llm demo: channel {settings.channels[0].channel}, NATS {nats_url}\n"
            f"answering: provider '{settings.llm.default_provider}' "
            f"({answering.type}, model {answering.model})"
            + (f"\n{SWITCH_HINT}" if answering.type == "scripted" else "")
            + (f"\n{LOCAL_NOTE}" if answering.type == "local" else "")
            + "\nCtrl+C stops the demo.\n"
        )
        service = Service(
            settings,
            rng=random.Random(seed),
            listeners=[transcript.decision],
        )
        stop = asyncio.Event()
        bot = asyncio.create_task(service.run(stop))
        ready = asyncio.create_task(service.ready.wait())
        await asyncio.wait({bot, ready}, timeout=30, return_when="FIRST_COMPLETED")
        if not ready.done():
            ready.cancel()
            stop.set()
            return await bot if bot.done() else 1
        if service.surface is not None and service.surface.web is not None:
            transcript.banner(f"dashboard: http://127.0.0.1:{service.surface.web.port}/\n")
        nc = await nats.connect(nats_url)
        channel = SimulatedChannel(
            nc,
            domain=settings.channels[0].domain,
            channel=settings.channels[0].channel,
            bot_username=settings.bot.username,
            on_chat=transcript.chat,
        )
        await channel.start()
        script = asyncio.create_task(play(channel, transcript, speed))
        try:
            await (until() if until is not None else _until_stopped(duration))
        finally:
            # Stop in order, whatever went wrong: the scenario, the channel, then the bot,
            # and only then (leaving the ExitStack) the NATS server.
            script.cancel()
            with contextlib.suppress(BaseException):
                await script
            service.request_stop("demo finished")  # in-flight replies still reach the channel
            stop.set()
            code = await bot
            with contextlib.suppress(Exception):
                await channel.stop()
                await nc.close()
        answered = service.stats["decision_answered"]
        transcript.banner(
            f"\n{answered} replies answered in {len(channel.commands)} chat messages; "
            f"bot exited with {code}."
        )
        return code


async def run_simulate(
    *,
    nats_url: str,
    channel: str,
    domain: str = "cytu.be",
    bot_username: str = "CynthiaRothbot",
    duration: float | None = None,
    speed: float = 1.0,
    out: IO[str] | None = None,
) -> int:
    """Run only the simulated channel against ``nats_url``."""
    transcript = Transcript(out, bot=bot_username)
    transcript.banner(
        f"simulating channel {channel} on {domain} via {nats_url}; the bot's replies show up "
        "as they arrive. Ctrl+C stops."
    )
    nc = await nats.connect(nats_url)
    sim = SimulatedChannel(
        nc, domain=domain, channel=channel, bot_username=bot_username, on_chat=transcript.chat
    )
    await sim.start()
    script = asyncio.create_task(play(sim, transcript, speed))
    try:
        await _until_stopped(duration)
    finally:
        script.cancel()
        with contextlib.suppress(BaseException):
            await script
        with contextlib.suppress(Exception):
            await sim.stop()
            await nc.close()
    transcript.banner(f"\n{len(sim.commands)} messages from the bot.")
    return 0
