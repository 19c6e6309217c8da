"""Intake filters: chat the bot must never react to, decided before any trigger runs.

Runs in the NATS callback for every ``chatMsg``/``pm``, so each check is a comparison or a set
lookup. Returns a :class:`~kryten_llm.pipeline.decisions.Reason` when the message is to be
ignored, ``None`` when it may go on to the triggers:

- the bot's own echo (CyTube broadcasts the bot's messages back to it, PROTOCOL.md §3.1);
- ``[server]`` notices and server whispers that moderators receive;
- messages from shadow-muted users (only moderators see them);
- the history CyTube replays on join: older than the bot's start, or already seen;
- commands for other bots (``!skip``, ``/me``), but not text such as "...lol";
- configured ignored users, and other bots (by name or name pattern), so that two bots never
  talk each other into a loop.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict

from kryten_llm.bus.events import ChatEvent
from kryten_llm.config import FiltersConfig
from kryten_llm.pipeline.decisions import Reason

_SEEN_CAPACITY = 2048


class IntakeFilter:
    """Decides whether a chat message is one the bot may consider at all."""

    def __init__(
        self, config: FiltersConfig, bot_username: str, *, started_at_ms: int | None = None
    ) -> None:
        self._bot = bot_username.lower()
        self._started_at_ms = (
            started_at_ms if started_at_ms is not None else int(time.time() * 1000)
        )
        # Keys of recent messages: a bridge reconnect replays the last 15 lines again.
        self._seen: OrderedDict[tuple[str, int, str], None] = OrderedDict()
        self.reconfigure(config)

    def reconfigure(self, config: FiltersConfig) -> None:
        """Filter by ``config`` from the next message on; the start time and the messages
        seen are kept (a reload is not a restart: nothing sent before it is a replay)."""
        self._ignored = frozenset(name.lower() for name in config.ignored_users)
        self._bots = frozenset(name.lower() for name in config.other_bots)
        self._bot_patterns = [re.compile(p) for p in config.bot_name_patterns]
        self._prefixes = tuple(config.command_prefixes)
        self._replay_before_ms = self._started_at_ms - int(config.replay_grace_seconds * 1000)

    def check(self, chat: ChatEvent) -> Reason | None:
        """The reason to ignore ``chat``, or ``None`` when it may be answered."""
        user = chat.username.lower()
        if user == self._bot:
            return Reason.OWN_MESSAGE
        if user == "[server]" or chat.css_class == "server-whisper":
            return Reason.SERVER_NOTICE
        if chat.shadow:
            return Reason.SHADOW_MUTED
        if chat.time_ms and chat.time_ms < self._replay_before_ms:
            return Reason.REPLAY
        if chat.time_ms:
            seen = self._seen
            size = len(seen)
            seen[(user, chat.time_ms, chat.raw)] = None  # a key seen before stays where it was
            if len(seen) == size:
                return Reason.DUPLICATE
            if size == _SEEN_CAPACITY:
                seen.popitem(last=False)
        if user in self._ignored:
            return Reason.IGNORED_USER
        if user in self._bots or (
            self._bot_patterns and any(p.search(chat.username) for p in self._bot_patterns)
        ):
            return Reason.OTHER_BOT
        text = chat.text.lstrip()
        if not text:
            return Reason.EMPTY
        # One C call rules out a command for nearly every line; the loop looks closer.
        if text.startswith(self._prefixes) and self._is_command(text):
            return Reason.COMMAND
        return None

    def _is_command(self, text: str) -> bool:
        for prefix in self._prefixes:
            if text.startswith(prefix):
                rest = text[len(prefix) :]
                # "!skip" and "/me" are commands; "!!!" and "...lol" are not.
                return bool(rest) and rest[0].isalpha()
        return False
