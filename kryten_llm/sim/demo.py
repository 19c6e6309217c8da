"""``kryten-llm demo`` and ``kryten-llm simulate``: the bot alive in a channel, locally.

``demo`` starts, in one process tree: an embedded nats-server (or uses ``--nats``), the
simulated channel playing a movie night written afresh each round (:mod:`.script`), and the
bot itself with the bundled demo config, answering through the best model at hand
(:mod:`.nearby`: a local OpenAI-compatible server, else SmolLM2 in-process, else the scripted
provider) or the providers of ``--config``. The terminal shows the channel as a transcript
with the bot's decisions and a tally per round (:mod:`.tally`). Ctrl+C, SIGTERM or
``--duration`` stop the channel, then the bot, then the nats-server it started: exit 0, no
traceback.

``simulate`` runs only the simulated channel against a NATS server, for trying a bot that runs
elsewhere (under systemd, say) without CyTube.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import json
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

import nats

from kryten_llm.config import Settings, load_settings
from kryten_llm.console import on_stop_signals
from kryten_llm.errors import ConfigError
from kryten_llm.service import Service
from kryten_llm.sim.channel import SimulatedChannel
from kryten_llm.sim.natsserver import NatsServer
from kryten_llm.sim.nearby import DEFAULT_TARGETS, Choice, ProbeTarget, choose
from kryten_llm.sim.script import PLAYLIST, ROUND_SECONDS, RoundWriter
from kryten_llm.sim.tally import Tally
from kryten_llm.sim.transcript import Transcript

_SCALED_COOLDOWNS = (
    "global_cooldown_seconds",
    "user_cooldown_seconds",
    "mention_cooldown_seconds",
    "unsolicited_window_seconds",
)
_SCALED_COUNTS = ("global_per_minute", "global_per_hour", "user_per_hour")
_SCALED_SPAM = (
    "window_seconds",
    "identical_window_seconds",
    "base_penalty_seconds",
    "max_penalty_seconds",
    "forgive_after_seconds",
)


def _scale_to_speed(settings: Settings, speed: float) -> None:
    """Run the bundled config's clocks ``speed`` times faster, as the scenario runs.

    At ``--speed 3`` a round takes 8 s instead of 24; cooldowns and windows shrink with it
    and per-minute counts grow, so the bot sees the same night, only sooner.
    """
    limits, spam = settings.ratelimit, settings.spam
    for name in _SCALED_COOLDOWNS:
        setattr(limits, name, getattr(limits, name) / speed)
    for name in _SCALED_COUNTS:
        setattr(limits, name, max(1, round(getattr(limits, name) * speed)))
    for name in _SCALED_SPAM:
        setattr(spam, name, getattr(spam, name) / speed)
    for word in settings.triggers.words:
        word.cooldown_seconds /= speed


def demo_settings(
    nats_url: str,
    config: Path | None,
    log_dir: Path | None,
    provider: str | None = None,
    *,
    choice: Choice | None = None,
    speed: float = 1.0,
) -> Settings:
    """The bundled demo config (or ``config``), pointed at ``nats_url``.

    ``provider`` picks one of the config's providers; otherwise ``choice`` (what
    :func:`kryten_llm.sim.nearby.choose` found) answers, or the config's own default. With the
    bundled config only the provider that answers is kept, so an optional part that is absent
    (SmolLM2) is never probed, and never warned about.
    """
    overrides: dict[str, Any] = {}
    if config is None:
        bundled = importlib.resources.files("kryten_llm.sim").joinpath("demo_config.json")
        overrides = json.loads(bundled.read_text(encoding="utf-8"))
    settings = load_settings(config, **overrides)
    llm = settings.llm
    if provider is not None:
        if provider not in llm.providers:
            known = ", ".join(sorted(llm.providers))
            raise ConfigError([("--provider", f"no provider {provider!r}", f"use one of {known}")])
        llm.default_provider = provider
    elif choice is not None:
        if choice.config is not None:
            llm.providers[choice.provider] = choice.config
        llm.default_provider = choice.provider
    if config is None:
        llm.providers = {llm.default_provider: llm.providers[llm.default_provider]}
        llm.fallback = []
        _scale_to_speed(settings, speed)
    settings.nats.servers = [nats_url]
    settings.web.port = 0  # any free port: a demo must not fail on a busy one (URL printed)
    settings.logging.response_log = log_dir is not None
    if log_dir is not None:
        settings.logging.response_log_dir = log_dir
    return settings


async def play(
    channel: SimulatedChannel,
    transcript: Transcript | None,
    speed: float,
    *,
    writer: RoundWriter | None = None,
    tally: Tally | None = None,
) -> None:
    """Play round after round, each written afresh, until cancelled."""
    writer = writer or RoundWriter()
    uid = 0
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        lines = writer.next_round()
        if tally is not None:
            if tally.rounds and transcript is not None:
                transcript.event(tally.rounds[-1].line())
            tally.start_round(writer.round)
        for line in lines:
            delay = started + line.at / speed - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            correlation_id = None
            if line.action == "userlist":
                await channel.userlist(writer.first_userlist())
            elif line.action == "join":
                await channel.join(line.user, line.rank)
                if transcript is not None:
                    transcript.event(f"{line.user} joined")
            elif line.action == "leave":
                await channel.leave(line.user)
                if transcript is not None:
                    transcript.event(f"{line.user} left")
            elif line.action == "media":
                uid += 1
                media_id, seconds = next((m, s) for t, m, s in PLAYLIST if t == line.text)
                await channel.change_media(uid, media_id, line.text, seconds)
                if transcript is not None:
                    transcript.event(f"now playing: {line.text}")
            elif line.action == "chat":
                correlation_id = await channel.chat(line.user, line.text)
            elif line.action == "pm":
                correlation_id = await channel.pm(line.user, line.text, channel.bot_username)
            if tally is not None and correlation_id is not None:
                tally.expect(correlation_id, line.user, line.expect)
        rest = started + ROUND_SECONDS / speed - loop.time()
        if rest > 0:
            await asyncio.sleep(rest)


def _banner(settings: Settings, nats_url: str, why: str | None) -> str:
    name = settings.llm.default_provider
    answering = settings.llm.providers[name]
    where = f", {answering.base_url}" if answering.type == "openai" else ""
    text = (
        f"kryten-llm demo: channel {settings.channels[0].channel}, NATS {nats_url}\n"
        f"answering: provider '{name}' ({answering.type}, model {answering.model}{where})\n"
    )
    if why:
        text += why + "\n"
    return text + "Ctrl+C stops the demo.\n"


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
    probe_targets: tuple[ProbeTarget, ...] = DEFAULT_TARGETS,
    tally: Tally | None = None,
) -> int:
    """Run the whole demo; returns the exit code.

    Args:
        duration: stop after this many seconds (None: on Ctrl+C/SIGTERM only).
        nats_url: an existing NATS server; None starts an embedded one.
        config: a config file to use instead of the bundled demo config.
        provider: which of the config's providers answers (default: the best at hand, see
            :func:`kryten_llm.sim.nearby.choose`).
        speed: scenario speed factor (2.0 plays it twice as fast).
        seed: seed for the scenario and trigger probabilities (same seed, same night).
        log_dir: write the response log there (None: no response log file).
        out: where the transcript goes (stdout by default).
        until: an awaitable factory that ends the demo (tests); overrides duration.
        probe_targets: where to look for a local OpenAI-compatible server (127.0.0.1 ports).
        tally: the scorecard to fill (tests read it); a new one by default.
    """
    tally = tally if tally is not None else Tally()
    stopping = asyncio.Event()
    # The handlers stay on until the very end: a second Ctrl+C while stopping is ignored
    # rather than raising KeyboardInterrupt through the shutdown.
    with on_stop_signals(lambda _: stopping.set()), contextlib.ExitStack() as stack:
        if nats_url is None:
            server = stack.enter_context(NatsServer())
            nats_url = server.url
        choice = None
        if provider is None and config is None:
            bundled = demo_settings(nats_url, None, None, "smollm2")
            choice = await choose(bundled.llm.providers["smollm2"], probe_targets)
        settings = demo_settings(nats_url, config, log_dir, provider, choice=choice, speed=speed)
        transcript = Transcript(out, bot=settings.bot.username)
        why = choice.why if choice is not None else None
        if provider is not None:
            why = "why: --provider; without it the demo takes the best model at hand."
        transcript.banner(_banner(settings, nats_url, why))
        service = Service(
            settings,
            rng=random.Random(seed),
            listeners=[transcript.decision, tally.decision],
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
        started = time.monotonic()
        script = asyncio.create_task(
            play(channel, transcript, speed, writer=RoundWriter(seed), tally=tally)
        )
        ending = asyncio.ensure_future(until() if until is not None else stopping.wait())
        try:
            await asyncio.wait({ending, script}, timeout=duration, return_when="FIRST_COMPLETED")
        finally:
            # Stop in order, whatever went wrong: the channel's script, then the bot (its
            # in-flight replies still reach the channel), then the channel's connection, and
            # only then (leaving the ExitStack) the NATS server.
            for task in (ending, script):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            service.request_stop("demo finished")
            stop.set()
            code = await bot
            with contextlib.suppress(Exception):
                await channel.stop()
                await nc.close()
        if tally.rounds and tally.rounds[-1].aimed:
            transcript.event(tally.rounds[-1].line() + " (last round, cut short)")
        lines = [
            "",
            f"{tally.by_kind['answered']} replies in {len(channel.commands)} chat messages "
            f"over {time.monotonic() - started:.0f} s; bot exited with {code}.",
            *tally.summary(),
        ]
        if tally.first_answer is not None:
            lines.append(
                f"first answer {tally.first_answer - started:.1f} s after the channel opened"
            )
        transcript.banner("\n".join(lines))
        return code


async def _until_stopped(duration: float | None) -> None:
    """Wait for SIGINT/SIGTERM or ``duration`` seconds, whichever comes first."""
    stop = asyncio.Event()
    with on_stop_signals(lambda _: stop.set()), contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), duration)


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
