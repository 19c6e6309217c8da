"""The operator's switches, one implementation for the web dashboard and ``kryten.llm.command``.

Every action needs the control token (``web.token`` or ``KRYTEN_LLM_WEB__TOKEN``), compared in
constant time; with no token configured, controls are disabled, not open. Each action is
logged with its origin (``web 127.0.0.1 Mozilla/...`` or ``nats``), whether it succeeded or not.
"""

from __future__ import annotations

from typing import Any, Protocol

import structlog

from kryten_llm.errors import ControlError
from kryten_llm.webguard import check_token

log = structlog.get_logger(__name__)

# The switches handled here; every other action tunes the configuration (``tune``: reload,
# runtime changes, reset; see kryten_llm.bot.tuning).
SWITCHES = ("pause", "resume", "dry_run", "clear_cooldowns", "explore_stop", "memory")


class Controlled(Protocol):
    """What the service offers to the controls."""

    def set_paused(self, paused: bool) -> None: ...

    def set_dry_run(self, dry_run: bool) -> None: ...

    async def tune(self, action: str, value: Any, origin: str) -> dict[str, Any]:
        """Reload or change the configuration; raises ControlError when refused."""
        ...

    async def clear_cooldowns(self) -> None: ...

    async def memory_command(self, payload: Any) -> dict[str, Any]:
        """List or forget a user's notes (kryten_llm.memory); raises ControlError if refused."""
        ...

    async def stop_explore(self, run: str) -> None: ...

    @property
    def dry_run(self) -> bool: ...


class Controls:
    """Checks the token, runs an action on the service, logs it.

    Args:
        target: the service.
        token: the control token; ``None`` or empty disables every action.
    """

    def __init__(self, target: Controlled, token: str | None) -> None:
        self._target = target
        self._token = token or None

    @property
    def enabled(self) -> bool:
        return self._token is not None

    def authorize(self, presented: str | None) -> None:
        """Raise :class:`ControlError` unless ``presented`` is the configured token."""
        check_token(self._token, presented)

    async def run(
        self, action: str, value: Any, *, token: str | None, origin: str
    ) -> dict[str, Any]:
        """Authorize, then perform ``action``; returns what changed.

        Raises:
            ControlError: refused (no or wrong token, unknown action, bad value).
        """
        try:
            self.authorize(token)
            result = await self._perform(action, value, origin)
        except ControlError as exc:
            log.warning("control_refused", action=action, origin=origin, error=str(exc))
            raise
        log.warning("control_action", action=action, value=value, origin=origin)
        return result

    async def _perform(self, action: str, value: Any, origin: str) -> dict[str, Any]:
        target = self._target
        if action == "pause":
            target.set_paused(True)
            return {"paused": True}
        if action == "resume":
            target.set_paused(False)
            return {"paused": False}
        if action == "dry_run":
            wanted = (not target.dry_run) if value is None else value
            if not isinstance(wanted, bool):
                raise ControlError(400, "dry_run takes true, false or nothing (toggle)")
            target.set_dry_run(wanted)
            return {"dry_run": wanted}
        if action == "memory":
            return {"memory": await target.memory_command(value)}
        if action == "clear_cooldowns":
            await target.clear_cooldowns()
            return {"cooldowns": "cleared"}
        if action == "explore_stop":
            if not isinstance(value, str) or not value:
                raise ControlError(400, 'explore_stop takes a run id (or "*" for every run)')
            await target.stop_explore(value)
            return {"explore_stop": value}
        return await target.tune(action, value, origin)
