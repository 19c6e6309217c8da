"""The read-only view of the running bot that the operator surface is built on.

The surface (dashboard, ``/health``, ``/metrics``, Services API) only reads the bot; what it
may change goes through :class:`~kryten_llm.ops.controls.Controlled`. Both are protocols, so
``ops`` never imports the service that implements them and the imports run one way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from kryten_llm.config import ChannelConfig, Settings
    from kryten_llm.llm.manager import ProviderManager
    from kryten_llm.ops.health import Liveness
    from kryten_llm.pipeline.state import ChannelState
    from kryten_llm.pipeline.stats import Flags, Stats


class BotView(Protocol):
    """What a running bot shows its operator."""

    @property
    def settings(self) -> Settings:
        """The settings in force now (the active personality included)."""

    @property
    def state_name(self) -> str:
        """The service's lifecycle state (``running``, ``stopping``...)."""

    @property
    def running(self) -> bool: ...

    @property
    def instance(self) -> str:
        """This process's id (several instances may share a service name)."""

    def tuning(self) -> Mapping[str, Any]:
        """What the operator may tune, as in force: ``channels`` (each one's personality,
        trigger words and limits), ``overrides``, ``providers`` (the order), and ``last``
        (the last reload or change: ok or its errors with key paths); empty before the start."""

    @property
    def nats_connected(self) -> bool: ...

    @property
    def uptime_seconds(self) -> float: ...

    @property
    def stats(self) -> Stats: ...

    @property
    def flags(self) -> Flags: ...

    @property
    def manager(self) -> ProviderManager | None:
        """The provider manager, once built."""

    @property
    def queue_depth(self) -> int: ...

    @property
    def queue_capacity(self) -> int: ...

    @property
    def fallback_lines(self) -> int:
        """Lines in the fallback pools (0: none)."""

    def pool_sizes(self) -> Mapping[str, int]:
        """Lines per fallback pool."""

    def channel_states(self) -> Sequence[tuple[ChannelConfig, ChannelState]]:
        """Each configured channel with its state."""

    def liveness(self) -> Liveness | None:
        """What the running parts are doing now (``None`` before they start)."""
