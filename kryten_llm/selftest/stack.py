"""The self-test's stack: every part of a live deployment, started locally in one process tree.

:class:`Stack` starts, in order: the embedded nats-server of the demo
(:class:`~kryten_llm.sim.natsserver.NatsServer`), the failing HTTP provider
(:mod:`.httpprovider`), the bot itself as ``python -m kryten_llm`` on a scratch config
(:mod:`.scratch`), and the demo's simulated channel, which publishes exactly what the bridge
publishes and plays CyTube for the bot's commands. It is ready when the bot announces its
startup on NATS. Scenarios talk to it through :meth:`Stack.chat`, :meth:`Stack.decision` and
:meth:`Stack.command`; :meth:`Stack.stop` stops everything in the reverse order and is harmless
twice. Child processes run in their own session: a Ctrl+C in the terminal reaches only the
self-test, which stops them in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import nats

import kryten_llm
from kryten_llm.bus.subjects import lifecycle
from kryten_llm.errors import SelftestError
from kryten_llm.selftest.httpprovider import Behaviour, FlakyProvider, SeenRequest
from kryten_llm.selftest.scratch import (
    BOT_USERNAME,
    CHANNEL,
    DOMAIN,
    FLAKY,
    Scratch,
    write_scratch,
)
from kryten_llm.selftest.watch import JsonLines, short, tail, wait_for
from kryten_llm.sim.channel import SentCommand, SimulatedChannel
from kryten_llm.sim.natsserver import NatsServer

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

BOT_START_SECONDS = 30.0
BOT_STOP_SECONDS = 15.0
SERVICE_NAME = "llm"  # the config's service.name (its default)


def child_env() -> dict[str, str]:
    """The environment of the self-test's children.

    The operator's ``KRYTEN_LLM_*`` overrides are left out (the scratch config is the whole
    config), and the folder this ``kryten_llm`` was imported from comes first on the path, so
    the children run the very code under test.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("KRYTEN_LLM_")}
    home = str(Path(kryten_llm.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (home, env.get("PYTHONPATH")) if p)
    return env


async def start_child(
    *args: str, cwd: Path, output: IO[bytes] | int = asyncio.subprocess.DEVNULL
) -> asyncio.subprocess.Process:
    """Start ``python -m kryten_llm ARGS`` in ``cwd``, in a session of its own."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kryten_llm",
        *args,
        cwd=cwd,
        env=child_env(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=output,
        stderr=asyncio.subprocess.STDOUT if output != asyncio.subprocess.DEVNULL else output,
        start_new_session=True,
    )


async def end_child(process: asyncio.subprocess.Process, within: float) -> int:
    """SIGTERM, then SIGKILL when it is still there after ``within`` seconds; its exit code."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), within)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode


class Stack:
    """The whole system, local and hermetic; see the module docstring."""

    def __init__(self, root: Path, *, behaviour: Behaviour = Behaviour.FAIL) -> None:
        self.root = root
        self.flaky = FlakyProvider(behaviour)
        self.nats_server: NatsServer | None = None
        self.scratch: Scratch | None = None
        self.bot: asyncio.subprocess.Process | None = None
        self.dashboard_port: int | None = None
        self.responses = JsonLines(root / "logs", "responses-*.jsonl")
        self.bot_log = JsonLines(root, "bot.log")
        self.echoes: dict[str, str] = {}  # text said by the bot -> its echo's correlation id
        self._nc: NATS | None = None
        self._channel: SimulatedChannel | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def nats_url(self) -> str:
        assert self.nats_server is not None
        return self.nats_server.url

    @property
    def channel(self) -> SimulatedChannel:
        assert self._channel is not None, "the stack is not started"
        return self._channel

    async def start(self) -> None:
        """Start every part; :meth:`stop` cleans up what did start.

        Raises:
            SelftestError: a part did not start (the message says which and why).
        """
        try:
            self.nats_server = NatsServer()
            await asyncio.to_thread(self.nats_server.start)
        except (OSError, RuntimeError) as exc:
            self.nats_server = None
            raise SelftestError(f"nats-server did not start: {exc}") from exc
        try:
            await self.flaky.start()
            self._nc = await nats.connect(
                self.nats_url, connect_timeout=5, allow_reconnect=False, max_reconnect_attempts=0
            )
        except Exception as exc:  # OSError, or nats-py's own errors: all "did not start"
            raise SelftestError(f"a part did not start: {type(exc).__name__}: {exc}") from exc
        self.scratch = write_scratch(self.root, self.nats_url, self.flaky.base_url)
        await self._start_bot(self.scratch)
        self._channel = SimulatedChannel(
            self._nc,
            domain=DOMAIN,
            channel=CHANNEL,
            bot_username=BOT_USERNAME,
            on_chat=self._on_chat,
        )
        await self._channel.start()

    async def _start_bot(self, scratch: Scratch) -> None:
        assert self._nc is not None
        announced: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        async def on_startup(msg: Any) -> None:
            with contextlib.suppress(ValueError, asyncio.InvalidStateError):
                announced.set_result(json.loads(msg.data))

        sub = await self._nc.subscribe(lifecycle(SERVICE_NAME, "startup"), cb=on_startup)
        self._log_file = scratch.bot_log.open("wb")
        self.bot = await start_child(
            "--config", str(scratch.config), cwd=self.root, output=self._log_file
        )
        exited: asyncio.Future[Any] = asyncio.ensure_future(self.bot.wait())
        try:
            await asyncio.wait(
                {announced, exited}, timeout=BOT_START_SECONDS, return_when="FIRST_COMPLETED"
            )
        finally:
            await sub.unsubscribe()
            exited.cancel()
        if not announced.done():
            announced.cancel()
            if self.bot.returncode is not None:
                why = f"exited with {self.bot.returncode}"
            else:
                why = f"did not announce its startup within {BOT_START_SECONDS:g} s"
            raise SelftestError(f"the bot {why}: {tail(scratch.bot_log) or 'no output'}")
        endpoints = announced.result().get("metadata", {}).get("endpoints", {})
        self.dashboard_port = endpoints.get("dashboard", {}).get("port")

    def _on_chat(self, username: str, text: str, correlation_id: str, is_pm: bool) -> None:
        if username == BOT_USERNAME:
            self.echoes[text] = correlation_id

    async def chat(self, username: str, text: str) -> str:
        """A chat line in the simulated channel; its correlation id."""
        return await self.channel.chat(username, text)

    async def decision(self, correlation_id: str, within: float) -> dict[str, Any]:
        """The bot's response-log line about a message, waiting up to ``within`` seconds.

        Raises:
            SelftestError: the bot logged no decision about it in time.
        """
        return await self.responses.first(correlation_id, within, "decision in the response log")

    async def command(self, request_id: str, within: float) -> SentCommand:
        """The command with ``request_id`` as the simulated bridge saw it on NATS.

        Raises:
            SelftestError: no such command arrived in time.
        """

        def seen() -> SentCommand | None:
            for sent in self.channel.commands:
                if (sent.body.get("meta") or {}).get("request_id") == request_id:
                    return sent
            return None

        return await wait_for(
            seen, within, f"no command {short(request_id)} on kryten.robot.command"
        )

    async def flaky_requests(self, marker: str, within: float) -> list[SeenRequest]:
        """The HTTP provider's requests about ``marker``, waiting for the first.

        Raises:
            SelftestError: none arrived in time.
        """
        return await wait_for(
            lambda: self.flaky.requests_about(marker),
            within,
            f"the HTTP provider {FLAKY} got no request about {marker}",
        )

    def log_events(self, correlation_id: str) -> list[str]:
        """The bot's diagnostic log events about a message, in order, repeats folded."""
        events: list[str] = []
        for record in self.bot_log.about(correlation_id):
            event = str(record.get("event", "?"))
            if not events or events[-1] != event:
                events.append(event)
        return events

    def reach(self) -> list[str]:
        """How to reach the running stack (``--keep-running``)."""
        assert self.scratch is not None
        assert self.bot is not None
        lines = [
            f"  NATS           {self.nats_url}",
            f"  bot            pid {self.bot.pid}, config {self.scratch.config}",
            f"  bot log        {self.scratch.bot_log}",
            f"  response log   {self.scratch.responses}/",
            f"  HTTP provider  {self.flaky.base_url} (fails on purpose)",
            f"  channel        {CHANNEL} on {DOMAIN}, bot account {BOT_USERNAME}",
            f"  talk to it     kryten-llm simulate --nats {self.nats_url} --channel {CHANNEL} "
            f"--domain {DOMAIN} --bot-username {BOT_USERNAME}",
        ]
        if self.dashboard_port:
            lines.insert(1, f"  dashboard      http://127.0.0.1:{self.dashboard_port}/")
        return lines

    async def stop(self) -> int | None:
        """Stop the channel, release the HTTP provider, stop the bot, then NATS; the bot's
        exit code (None when it never started). Harmless twice."""
        code = None
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await self._channel.stop()
        await self.flaky.close()  # a hung request is answered, so the bot stops promptly
        if self.bot is not None:
            code = await end_child(self.bot, BOT_STOP_SECONDS)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._nc is not None:
            nc, self._nc = self._nc, None
            with contextlib.suppress(Exception):
                await nc.close()
        if self.nats_server is not None:
            server, self.nats_server = self.nats_server, None
            await asyncio.to_thread(server.close)
        return code
