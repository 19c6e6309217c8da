"""The bot's share of a channel's chat, over a sliding window of the channel's last messages.

The channel's plan says the bot's messages (all kinds) stay under a share of the chat (5 % by
default). The window is counted in messages, not seconds: a share is a ratio of messages, and
a count window gives the same answer however fast or slow the evening is. Every chat line the
channel shows counts (other users, other bots, commands); the bot's own lines count when they
are sent (one per part), not when CyTube echoes them, so a reply is never counted twice.

Replies that were approved but not sent yet are *reservations*: they count as the most parts a
reply may have until their outcome is known, so several unasked replies approved in a burst
cannot together overshoot the budget. The window only moves forward, so a reply approved now
is still within the budget when it is sent after more people have spoken. Reservations are held
per reply under the caller's key (the message's correlation id): replies that share a key (the
bridge may send an empty id) are each held, and each settle releases one of them. The total
held is kept as it changes, so a check adds nothing up.

Runs in the NATS callback (one tracker per channel): each step is a deque operation.
"""

from __future__ import annotations

from collections import deque


class ShareTracker:
    """Messages of one channel's chat, which of them were the bot's, and pending replies.

    Args:
        window: how many of the channel's latest messages the share is measured over.
    """

    def __init__(self, window: int) -> None:
        self._lines: deque[bool] = deque(maxlen=max(window, 1))
        self._bot = 0
        self._pending: dict[str, deque[int]] = {}  # key -> parts held, oldest first
        self._held = 0  # parts held by every reservation
        self._replies = 0  # reservations held

    @property
    def window(self) -> int:
        return self._lines.maxlen or 1

    @property
    def messages(self) -> int:
        """Messages in the window now."""
        return len(self._lines)

    @property
    def bot_messages(self) -> int:
        """The bot's messages in the window now."""
        return self._bot

    @property
    def share(self) -> float:
        """The bot's share of the window (0 when nothing was said yet)."""
        return self._bot / len(self._lines) if self._lines else 0.0

    def add(self, *, from_bot: bool = False, count: int = 1) -> None:
        """``count`` messages appeared in the chat (the bot's own when ``from_bot``)."""
        lines = self._lines
        for _ in range(count):
            if len(lines) == lines.maxlen and lines[0]:
                self._bot -= 1
            lines.append(from_bot)
            self._bot += from_bot

    def fits(self, parts: int, limit: float) -> bool:
        """Whether ``parts`` more bot messages keep the share at or under ``limit``.

        Pending reservations count as sent. Messages that would leave the window are assumed
        to be other people's: the check never underestimates the share.
        """
        pending = self._held
        mine = self._bot + pending + parts
        total = min(len(self._lines) + pending + parts, self.window)
        return mine <= limit * total

    def reserve(self, key: str, parts: int) -> None:
        """Hold room for a reply that was approved; :meth:`settle` it when it is done.

        Another reply held under the same ``key`` keeps its own reservation.
        """
        self._pending.setdefault(key, deque()).append(parts)
        self._held += parts
        self._replies += 1

    def settle(self, key: str, sent: int) -> None:
        """A reply held under ``key`` is done (the oldest of them): ``sent`` parts went out
        (0 when none). A key that holds nothing only counts what was sent."""
        held = self._pending.get(key)
        if held:
            self._held -= held.popleft()
            self._replies -= 1
            if not held:
                del self._pending[key]
        if sent:
            self.add(from_bot=True, count=sent)

    @property
    def pending(self) -> int:
        """Replies approved and not yet done."""
        return self._replies

    @property
    def held(self) -> int:
        """Bot messages the pending replies hold room for."""
        return self._held
