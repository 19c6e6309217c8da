"""Tuning the live bot: reload the config, make runtime changes that last, reset them.

A reload (SIGHUP, the dashboard, ``kryten.llm.command``) reads every configuration layer again
(:mod:`kryten_llm.config.layers`), validates the result with the same models as at startup and
puts the difference in force through one callback (the service rebuilds what changed through
:meth:`kryten_llm.bot.assembly.Bot.apply`). An invalid configuration changes nothing and is
refused with every error and its key path. Settings that cannot change while running
(:data:`RESTART_NEEDED`) keep their old values and are reported as needing a restart.

A runtime change (a trigger's probability, a limit, a channel's personality, the provider
order) is a runtime override (:mod:`kryten_llm.config.overrides`): checked exactly like a
reload, saved atomically to the overrides file (so it survives a restart), put in force, and
logged as an audit line (who, from where, old -> new). ``reset`` removes overrides.

Reloads and changes run one at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from kryten_llm.bot.changes import CHANGES, now, triggers_view
from kryten_llm.config.layers import Sources
from kryten_llm.config.overrides import (
    KeyPath,
    Override,
    dotted,
    lookup,
    parse_path,
    render_overrides,
)
from kryten_llm.config.runtime import channel_key
from kryten_llm.config.settings import Settings, settings_from
from kryten_llm.errors import ConfigError, ControlError
from kryten_llm.files import atomic_write

log = structlog.get_logger(__name__)

# Key paths (and everything under them) that only a restart can change.
RESTART_NEEDED: tuple[KeyPath, ...] = (
    ("nats",),
    ("bot", "username"),
    ("web", "enabled"),
    ("web", "host"),
    ("web", "port"),
    ("web", "token"),
    ("service",),
    ("logging",),
    ("send",),
    ("processing", "workers"),
    ("processing", "queue_size"),
    ("processing", "history_size"),
    ("memory", "enabled"),
    ("memory", "path"),
    ("cluster",),
    ("sharding",),
    ("participation", "share_window_messages"),
    ("media_change", "enabled"),
    ("media_change", "memory"),
    ("media_change", "memory_file"),
    ("media_change", "kv_bucket"),
)

Apply = Callable[[Settings, Settings], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Result:
    """What a reload or change did: the key paths changed and those needing a restart."""

    changed: tuple[str, ...]
    restart_needed: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"changed": list(self.changed), "restart_needed": list(self.restart_needed)}


class Tuner:
    """Reloads and runtime changes of one running bot.

    Args:
        sources: reads every configuration layer, with the given overrides instead of the
            overrides file's when not ``None`` (:func:`~kryten_llm.config.layers.find_sources`).
        current: the settings in force.
        apply: puts new settings in force (called with new, old); must not fail on settings
            that validated.
        cli: values given on the command line; they win over every layer, reload or not.
        check: the checks startup makes beyond the models (API keys, pool files), returning
            ``(path, problem, fix)`` for each problem.
    """

    def __init__(
        self,
        sources: Callable[[Sequence[Override] | None], Sources],
        current: Settings,
        apply: Apply,
        *,
        cli: dict[str, Any] | None = None,
        check: Callable[[Settings], list[tuple[str, str, str]]] | None = None,
    ) -> None:
        self._sources = sources
        self.settings = current
        self._apply = apply
        self._cli = dict(cli or {})
        self._check = check
        self._lock = asyncio.Lock()
        found = sources(None)
        self._overrides: list[Override] = list(found.overrides)
        self.overrides_path = found.overrides_path
        self.last: dict[str, Any] | None = None  # the last reload or change, for the dashboard

    @property
    def overrides(self) -> list[Override]:
        return list(self._overrides)

    def view(self) -> dict[str, Any]:
        """What the dashboard shows and edits (see :meth:`kryten_llm.ops.view.BotView.tuning`)."""
        return {
            "channels": triggers_view(self.settings),
            "personalities": sorted(self.settings.personalities),
            "providers": self.settings.llm.chain,
            "known_providers": sorted(self.settings.llm.providers),
            "overrides": [{**o.to_json(), "key": dotted(o.path)} for o in self._overrides],
            "last": self.last,
        }

    async def run(self, action: str, value: Any, origin: str) -> dict[str, Any]:
        """One operator action: reload, triggers, overrides, reset or a change of
        :data:`~kryten_llm.bot.changes.CHANGES` (the token was checked by the caller).

        Raises:
            ControlError: refused; nothing changed.
        """
        if action == "reload":
            return {"reload": (await self.reload(origin)).to_json()}
        if action == "triggers":
            return {"triggers": triggers_view(self.settings)}
        if action == "overrides":
            return {
                "overrides": [o.to_json() for o in self._overrides],
                "file": str(self.overrides_path),
            }
        if action == "reset":
            if value is not None and not isinstance(value, str):
                raise ControlError(400, "reset takes nothing (every override) or a key path")
            return {"reset": (await self.reset(value, origin)).to_json()}
        build = CHANGES.get(action)
        if build is None:
            known = ", ".join(("reload", "triggers", "overrides", "reset", *CHANGES))
            raise ControlError(400, f"unknown action {action!r}; known: {known}")
        result = await self.change(build(self.settings, value, origin), origin)
        return {action: result.to_json()}

    async def reload(self, origin: str) -> Result:
        """Read every layer again and put the result in force.

        Raises:
            ControlError: the configuration is invalid (nothing changed); ``errors`` lists
                every problem with its key path.
        """
        async with self._lock:
            try:
                sources = self._sources(None)
                new = self._checked(settings_from(sources, **self._cli))
            except ConfigError as exc:
                self._record(origin, "reload", errors=exc.problems)
                log.error(
                    "config_reload_failed",
                    origin=origin,
                    errors=[f"{p}: {what} ({fix})" for p, what, fix in exc.problems],
                )
                raise ControlError(400, _summary(exc), errors=exc.problems) from None
            try:
                new, restart = _keep_restart_values(new, self.settings)
            except ControlError as exc:
                self._record(origin, "reload", errors=[("(restart)", str(exc), "restart the bot")])
                log.error("config_reload_failed", origin=origin, errors=[str(exc)])
                raise
            result = await self._put(new, origin, "reload", restart)
            self._overrides = list(sources.overrides)
            return result

    async def change(self, overrides: Sequence[Override], origin: str) -> Result:
        """Add ``overrides`` (replacing any at the same paths), save and apply them.

        Raises:
            ControlError: the change does not validate or cannot be saved (nothing changed).
        """
        async with self._lock:
            paths = {o.path for o in overrides}
            kept = [o for o in self._overrides if o.path not in paths]
            return await self._replace([*kept, *overrides], origin, "change")

    async def reset(self, path: str | None, origin: str) -> Result:
        """Remove every override, or those at and under ``path``, and apply the file's values.

        Raises:
            ControlError: no override matches ``path``.
        """
        async with self._lock:
            prefix = parse_path(path) if path else ()
            kept = [o for o in self._overrides if o.path[: len(prefix)] != prefix]
            if path and len(kept) == len(self._overrides):
                known = ", ".join(dotted(o.path) for o in self._overrides) or "none"
                raise ControlError(404, f"no override at {path} (overrides: {known})")
            return await self._replace(kept, origin, "reset")

    async def _replace(self, overrides: list[Override], origin: str, what: str) -> Result:
        try:
            sources = self._sources(overrides)
            new = self._checked(settings_from(sources, **self._cli))
        except ConfigError as exc:
            self._record(origin, what, errors=exc.problems)
            raise ControlError(400, _summary(exc), errors=exc.problems) from None
        try:
            new, restart = _keep_restart_values(new, self.settings)
        except ControlError as exc:
            self._record(origin, what, errors=[("(restart)", str(exc), "restart the bot")])
            raise
        before = self._saved()
        try:
            self._save(render_overrides(overrides))
        except OSError as exc:
            problem = f"cannot save {self.overrides_path}: {exc.strerror}; nothing changed"
            self._record(origin, what, errors=[(str(self.overrides_path), problem, "fix it")])
            raise ControlError(500, problem) from None
        try:
            result = await self._put(new, origin, what, restart)
        except BaseException:  # not in force: the file must not say it is
            self._save(before)
            raise
        self._overrides = overrides
        return result

    def _saved(self) -> bytes | None:
        try:
            return self.overrides_path.read_bytes()
        except FileNotFoundError:
            return None

    def _save(self, content: bytes | None) -> None:
        """Write (or, for ``None``, remove) the overrides file atomically."""
        if content is None:
            self.overrides_path.unlink(missing_ok=True)
            return
        self.overrides_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.overrides_path, content)

    def _checked(self, settings: Settings) -> Settings:
        problems = self._check(settings) if self._check is not None else []
        if problems:
            raise ConfigError(problems)
        return settings

    async def _put(self, new: Settings, origin: str, what: str, restart: list[str]) -> Result:
        old = self.settings
        changes = _diff(old.model_dump(mode="json"), new.model_dump(mode="json"))
        if changes:
            await self._apply(new, old)
            self.settings = new
        result = Result(tuple(dotted(p) for p, _, _ in changes), tuple(restart))
        self._record(origin, what, result=result)
        log.warning(
            "config_changed" if changes else "config_unchanged",
            action=what,
            by=origin,
            changes=[{"path": dotted(p), "old": a, "new": b} for p, a, b in changes],
            restart_needed=list(restart),
        )
        return result

    def _record(
        self,
        origin: str,
        what: str,
        *,
        result: Result | None = None,
        errors: Iterable[tuple[str, str, str]] = (),
    ) -> None:
        self.last = {
            "action": what,
            "by": origin,
            "at": now(),
            "ok": result is not None,
            **(result.to_json() if result is not None else {}),
            "errors": [{"path": p, "problem": w, "fix": f} for p, w, f in errors],
        }


def _keep_restart_values(new: Settings, old: Settings) -> tuple[Settings, list[str]]:
    """``new`` with what only a restart can change kept at ``old``'s values, and which."""
    new_data = new.model_dump()
    old_data = old.model_dump()
    restart: list[str] = []
    for path in RESTART_NEEDED:
        found_new = lookup(new_data, path)
        found_old = lookup(old_data, path)
        if found_new != found_old:
            restart.append(dotted(path))
            _put_value(new_data, path, found_old[1])
    old_keys = [channel_key(c["domain"], c["channel"]) for c in old_data["channels"]]
    by_key = {channel_key(c["domain"], c["channel"]): c for c in new_data["channels"]}
    if set(by_key) != set(old_keys):
        added = sorted(set(by_key) - set(old_keys))
        removed = sorted(set(old_keys) - set(by_key))
        restart.append(f"channels (added: {added or 'none'}, removed: {removed or 'none'})")
        new_data["channels"] = [
            by_key.get(key, old) for key, old in zip(old_keys, old_data["channels"], strict=True)
        ]
    if not restart:
        return new, restart
    try:
        return Settings.model_validate(new_data), restart
    except ValueError as exc:
        raise ControlError(
            400, f"the change depends on settings that need a restart: {exc}"
        ) from None


def _put_value(data: dict[str, Any], path: KeyPath, value: Any) -> None:
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


def _diff(old: Any, new: Any, path: KeyPath = ()) -> list[tuple[KeyPath, Any, Any]]:
    """Leaf-level differences; lists compare whole (named items by identity would be nicer)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[tuple[KeyPath, Any, Any]] = []
        for key in dict.fromkeys([*old, *new]):
            out += _diff(old.get(key), new.get(key), (*path, str(key)))
        return out
    return [] if old == new else [(path, old, new)]


def _summary(exc: ConfigError) -> str:
    return "invalid configuration, nothing changed: " + "; ".join(
        f"{path}: {problem} ({fix})" for path, problem, fix in exc.problems
    )
