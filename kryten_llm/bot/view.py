"""What the operator surface may read of the live bot: its state, settings, counters and queue.

:class:`~kryten_llm.service.Service` owns the resources and the order of start and stop; this
base class holds what it has built and answers the read-only questions of
:class:`~kryten_llm.ops.view.BotView` (dashboard, ``/health``, the NATS services API) from it,
so that the lifecycle and the view can be read apart (``liveness()``, which needs the
supervisor's view of the workers, stays with the service). Every answer is safe before the bot
has started (``None``, ``0`` or empty) and after it stopped.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from kryten_llm.pipeline.stats import Flags, Stats

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

    from kryten_llm.bot.assembly import Bot
    from kryten_llm.bot.intake import Intake
    from kryten_llm.bot.operator import Operator
    from kryten_llm.bot.supervisor import Supervisor
    from kryten_llm.bus.sender import ChatSender
    from kryten_llm.cluster import Coordinator
    from kryten_llm.config import ChannelConfig, Settings
    from kryten_llm.llm.manager import ProviderManager
    from kryten_llm.pipeline.state import ChannelState

WORKER = "reply-worker-"  # the supervised reply workers' name prefix


class State(StrEnum):
    NEW = "new"
    CONNECTING = "connecting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class ServiceView:
    """The parts of the live bot the operator surface reads (see the module docstring).

    Subclasses set these attributes as the bot starts; nothing here changes them.
    """

    _settings: Settings
    _started_at: float
    _stats: Stats
    _flags: Flags
    _supervisor: Supervisor
    _sender: ChatSender | None
    state: State
    nc: NATS | None
    bot: Bot | None
    operator: Operator | None
    cluster: Coordinator | None

    @property
    def settings(self) -> Settings:
        return self.bot.settings if self.bot is not None else self._settings

    @property
    def state_name(self) -> str:
        return self.state.value

    def tuning(self) -> dict[str, Any]:
        return self.operator.tuner.view() if self.operator is not None else {}

    @property
    def running(self) -> bool:
        return self.state is State.RUNNING

    @property
    def nats_connected(self) -> bool:
        return bool(self.nc is not None and self.nc.is_connected)

    @property
    def uptime_seconds(self) -> float:
        return time.monotonic() - self._started_at

    @property
    def stats(self) -> Stats:
        return self._stats

    @property
    def flags(self) -> Flags:
        return self._flags

    @property
    def manager(self) -> ProviderManager | None:  # replaced by a reload that changes llm
        return self.bot.manager if self.bot is not None else None

    @property
    def intake(self) -> Intake | None:
        return self.bot.intake if self.bot is not None else None

    @property
    def queue_depth(self) -> int:
        return len(self.bot.queue) if self.bot is not None else 0

    @property
    def queue_capacity(self) -> int:
        return self.bot.queue.capacity if self.bot is not None else 0

    @property
    def fallback_lines(self) -> int:
        """Lines in the fallback pools for when every provider fails (0: none)."""
        pools = self.bot.pools if self.bot is not None else None
        return pools.total_lines if pools is not None else 0

    def pool_sizes(self) -> dict[str, int]:
        pools = self.bot.pools if self.bot is not None else None
        return pools.sizes() if pools is not None else {}

    def channel_states(self) -> list[tuple[ChannelConfig, ChannelState]]:
        if self.bot is None:
            return []
        return [(c.config, c.state) for c in self.bot.channels.values()]
