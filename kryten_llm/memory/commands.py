"""The operator's memory commands: list and forget by user, one function for every front door.

:func:`handle_memory_command` takes a plain payload (a NATS request's JSON, a dashboard action,
the command line's arguments) and returns a plain answer, so the command line
(``kryten-llm memory``), the running bot (:meth:`kryten_llm.memory.live.Memory.command`) and
any NATS or web endpoint say the same thing the same way. It calls SQLite: from async code run it
on a thread (the live bot's :meth:`~kryten_llm.memory.live.Memory.command` does).
"""

from __future__ import annotations

from typing import Any

from kryten_llm.errors import MemoryStoreError
from kryten_llm.memory.store import MemoryStore

ACTIONS = ("list", "forget")
_USER_MAX = 64


def handle_memory_command(store: MemoryStore, payload: object) -> dict[str, Any]:
    """Run one operator command on ``store``.

    Args:
        store: the open memory store.
        payload: ``{"action": "list", "user": NAME?, "domain": D?}`` (every note when no user)
            or ``{"action": "forget", "user": NAME, "domain": D?}`` (every domain when none).

    Returns:
        ``{"ok": true, "action", "user", "domain", "notes": [...]}`` for list,
        ``{"ok": true, "action", "user", "domain", "deleted": N}`` for forget, or
        ``{"ok": false, "error": "..."}`` saying what is wrong with the payload or the store.
    """
    if not isinstance(payload, dict):
        return _refused('send a JSON object such as {"action": "list", "user": "alice"}')
    action = payload.get("action")
    user = payload.get("user")
    domain = payload.get("domain")
    if action not in ACTIONS:
        return _refused(f"action must be one of {', '.join(ACTIONS)}")
    if user is not None and (not isinstance(user, str) or not 0 < len(user) <= _USER_MAX):
        return _refused(f"user must be a name of 1-{_USER_MAX} characters")
    if domain is not None and not isinstance(domain, str):
        return _refused("domain must be a string")
    if action == "forget" and user is None:
        return _refused("forget needs a user")
    answer: dict[str, Any] = {"ok": True, "action": action, "user": user, "domain": domain}
    try:
        if action == "forget":
            assert user is not None
            answer["deleted"] = store.forget(user, domain)
        else:
            notes = store.about(user, domain) if user is not None else store.notes()
            if user is None and domain is not None:
                notes = [note for note in notes if note.domain == domain]
            answer["notes"] = [note.as_dict() for note in notes]
    except MemoryStoreError as exc:
        return _refused(str(exc))
    return answer


def _refused(error: str) -> dict[str, Any]:
    return {"ok": False, "error": error}
