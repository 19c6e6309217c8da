"""The operator's switches on a running bot: pause, dry-run, tuning, cooldowns, memory.

One object implements :class:`~kryten_llm.ops.controls.Controlled` for the dashboard and
``kryten.llm.command`` alike (the controls check the token first). Tuning goes through a
:class:`~kryten_llm.bot.tuning.Tuner`; this module puts what it validated in force: new
providers only when the ``llm`` section changed (their re-probe loop replaced, a first probe
started), the fallback pools read again only when what they are read from changed, then
:meth:`kryten_llm.bot.assembly.Bot.apply`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from kryten_llm.bot.tuning import Tuner
from kryten_llm.errors import ControlError
from kryten_llm.pipeline.fallback import FallbackPools

if TYPE_CHECKING:
    import aiohttp

    from kryten_llm.bot.assembly import Bot
    from kryten_llm.bot.supervisor import Supervisor
    from kryten_llm.config import Settings
    from kryten_llm.config.layers import Sources
    from kryten_llm.config.overrides import Override
    from kryten_llm.llm.manager import CallObserver

log = structlog.get_logger(__name__)

REPROBE_TASK = "provider-reprobe"


class Operator:
    """What the operator's controls act on, for one running bot.

    Args:
        bot: the bot (its flags are the switches).
        sources: reads the configuration layers (see :class:`~kryten_llm.bot.tuning.Tuner`).
        cli: command-line values, kept over every reload.
        check: the startup checks beyond the models.
        session: the HTTP session new providers share.
        observer: told about every provider call (metrics).
        supervisor: runs the providers' re-probe loop.
        stop_explore: stops an explore run shown on the dashboard.
    """

    def __init__(
        self,
        bot: Bot,
        sources: Callable[[Sequence[Override] | None], Sources],
        *,
        cli: dict[str, Any],
        check: Callable[[Settings], list[tuple[str, str, str]]],
        session: aiohttp.ClientSession,
        observer: CallObserver,
        supervisor: Supervisor,
        stop_explore: Callable[[str], Awaitable[None]],
    ) -> None:
        self._bot = bot
        self._session = session
        self._observer = observer
        self._supervisor = supervisor
        self._stop_explore = stop_explore
        self._background: set[asyncio.Task[Any]] = set()
        self.tuner = Tuner(sources, bot.settings, self._put_in_force, cli=cli, check=check)

    @property
    def dry_run(self) -> bool:
        return self._bot.flags.dry_run

    def set_paused(self, paused: bool) -> None:
        self._bot.flags.paused = paused

    def set_dry_run(self, dry_run: bool) -> None:
        self._bot.flags.dry_run = dry_run

    async def tune(self, action: str, value: Any, origin: str) -> dict[str, Any]:
        """Reload, change or reset the configuration (see :mod:`kryten_llm.bot.tuning`).

        Raises:
            ControlError: refused; nothing changed.
        """
        return await self.tuner.run(action, value, origin)

    def request_reload(self, origin: str) -> None:
        """Reload in the background (SIGHUP): the outcome is logged, errors with key paths."""
        self._spawn(self._reload(origin), "config-reload")

    async def _reload(self, origin: str) -> None:
        with contextlib.suppress(ControlError):  # logged with every error by the tuner
            await self.tuner.reload(origin)

    async def _put_in_force(self, new: Settings, old: Settings) -> None:
        # Everything that can fail first; then the bot, then what follows the new providers.
        manager = pools = None
        if new.llm != old.llm:
            from kryten_llm.llm.manager import build_manager

            manager = build_manager(new.llm, self._session, observer=self._observer)
        if _pools_of(new) != _pools_of(old):
            pools = FallbackPools.from_settings(new)
        self._bot.apply(new, manager=manager, pools=pools)
        if new.dry_run != old.dry_run:
            self._bot.flags.dry_run = new.dry_run
        if manager is not None:
            self._supervisor.replace(REPROBE_TASK, manager.reprobe_failing)
            self._spawn(manager.probe_all(), "provider-probe")

    async def memory_command(self, payload: Any) -> dict[str, Any]:
        """``{"action": "list" | "forget", "user": ..., "domain"?: ...}`` on the memory store.

        Raises:
            ControlError: memory is off, or the command is malformed (the message says how).
        """
        memory = self._bot.memory
        if memory is None:
            raise ControlError(409, "memory is off: set memory.enabled (and restart)")
        result = await memory.command(payload)
        if not result.get("ok"):
            raise ControlError(400, str(result.get("error", "refused")))
        return {k: v for k, v in result.items() if k != "ok"}

    async def clear_cooldowns(self) -> None:
        await self._bot.clear_cooldowns()

    async def stop_explore(self, run: str) -> None:
        await self._stop_explore(run)

    async def close(self) -> None:
        """Cancel the reloads and probes still running (before the HTTP session closes)."""
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, work: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(work)
        task.set_name(name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _pools_of(settings: Settings) -> tuple[object, ...]:
    """What the fallback pools are loaded from: a change means loading them again."""
    words = sorted(w.name for _, t in settings.trigger_sets() for w in t.words)
    return settings.fallback, tuple(words), tuple(sorted(settings.personalities))
