"""Long-lived tasks of the service that cannot end silently.

Every loop the service runs for its whole life (the reply workers, the providers' re-probe) is
started here; the loops of the operator surface and the lifecycle catch their own failures. A
task that ends while the service runs, by an exception or by returning, is a bug: it is logged
with its traceback, counted, and started again after a short pause. A task that keeps dying
(``max_restarts`` within ``window_seconds``) is given up on, and ``on_give_up`` is told why, so
the service stops with a clear error instead of running mute.

:meth:`Supervisor.stop` cancels everything and is idempotent.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum

import structlog

log = structlog.get_logger(__name__)

_RESTART_PAUSE = 0.1  # seconds before a dead task is started again


class SupervisorState(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"


@dataclass(slots=True)
class _Slot:
    name: str
    factory: Callable[[], Awaitable[None]]
    task: asyncio.Task[None] | None = None
    deaths: deque[float] = field(default_factory=deque)
    restarts: int = 0
    retired: bool = False  # replaced by a new slot of the same name: its end is expected


class Supervisor:
    """Runs named tasks for the life of the service and restarts any that die.

    Args:
        on_give_up: called with a reason when a task dies too often to go on.
        max_restarts: deaths allowed within ``window_seconds`` before giving up.
        clock: seconds, for the restart window.
    """

    def __init__(
        self,
        on_give_up: Callable[[str], None],
        *,
        max_restarts: int = 5,
        window_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._on_give_up = on_give_up
        self._max = max_restarts
        self._window = window_seconds
        self._clock = clock
        self._slots: dict[str, _Slot] = {}
        self.state = SupervisorState.RUNNING

    def spawn(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        """Run ``factory()`` as the task ``name`` until :meth:`stop`."""
        slot = self._slots[name] = _Slot(name, factory)
        self._start(slot)

    def replace(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        """Run ``factory()`` as ``name`` from now on; the task running so far is cancelled
        (not counted as a death). Used when what a task works on is rebuilt (a reload)."""
        old = self._slots.get(name)
        if old is not None:
            old.retired = True
            if old.task is not None:
                old.task.cancel()
        self.spawn(name, factory)

    def alive(self, prefix: str = "") -> int:
        """How many tasks whose name starts with ``prefix`` are running now."""
        return sum(
            1
            for slot in self._slots.values()
            if slot.name.startswith(prefix) and slot.task is not None and not slot.task.done()
        )

    @property
    def restarts(self) -> int:
        """Restarts so far, over every task."""
        return sum(slot.restarts for slot in self._slots.values())

    def _start(self, slot: _Slot) -> None:
        async def run() -> None:
            await slot.factory()

        slot.task = asyncio.create_task(run(), name=slot.name)
        slot.task.add_done_callback(lambda task: self._ended(slot, task))

    def _ended(self, slot: _Slot, task: asyncio.Task[None]) -> None:
        if self.state is SupervisorState.STOPPED or slot.retired:
            return
        error = None if task.cancelled() else task.exception()
        if error is not None:
            log.error("task_died", task=slot.name, exc_info=error)
        else:  # returned, or cancelled by someone other than stop()
            log.error("task_ended", task=slot.name, detail="a service task ended early")
        now = self._clock()
        slot.deaths.append(now)
        while slot.deaths and now - slot.deaths[0] > self._window:
            slot.deaths.popleft()
        if len(slot.deaths) > self._max:
            reason = (
                f"task {slot.name} died {len(slot.deaths)} times in {self._window:.0f} s: {error!r}"
            )
            log.critical("task_given_up", task=slot.name, reason=reason)
            self._on_give_up(reason)
            return
        slot.restarts += 1
        asyncio.get_running_loop().call_later(_RESTART_PAUSE, self._restart, slot)

    def _restart(self, slot: _Slot) -> None:
        if self.state is SupervisorState.RUNNING:
            log.warning("task_restarted", task=slot.name, restarts=slot.restarts)
            self._start(slot)

    async def stop(self) -> None:
        """Cancel every task and wait for them; harmless when called again."""
        if self.state is SupervisorState.STOPPED:
            return
        self.state = SupervisorState.STOPPED
        tasks = [slot.task for slot in self._slots.values() if slot.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
