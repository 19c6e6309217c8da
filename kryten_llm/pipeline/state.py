"""What the bot knows about each channel: who is there, what is playing, what was said.

Updated from every event in the NATS callback (cheap dictionary and deque operations only) and
read by the prompt builder and the rate limiter. ``chatMsg`` carries no rank, so ranks come from
``userlist``, ``addUser`` and ``setUserRank`` (PROTOCOL.md §3.1). Memory is bounded whatever the
channel sends: the history is a fixed-size deque, users are removed when they leave, and the user
table holds at most ``max_users`` (a flood of ``addUser`` without ``userLeave`` drops the user
seen least recently, counted in ``users_dropped``).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec
import structlog
from msgspec.structs import replace

from kryten_llm.bus.events import (
    AfkEvent,
    CurrentEvent,
    Event,
    MediaEvent,
    MediaUpdateEvent,
    RankEvent,
    User,
    UserJoinEvent,
    UserLeaveEvent,
    UserListEvent,
)

log = structlog.get_logger(__name__)

MAX_USERS = 10_000
"""Users kept per channel. CyTube's busiest channels list a few thousand; 10,000 users cost
about 3 MB."""


class HistoryLine(msgspec.Struct, frozen=True, gc=False):
    """One line of chat as the bot remembers it (a Struct: one is built per chat line)."""

    username: str
    text: str
    time_ms: int
    from_bot: bool = False


@dataclass(slots=True)
class NowPlaying:
    """The current video, with the playback position from the latest ``mediaUpdate``."""

    media: MediaEvent
    uid: int | None = None
    position: float = 0.0
    paused: bool = False
    updated_at: float = field(default_factory=time.monotonic)


class ChannelState:
    """Users, ranks, current media and recent chat of one channel."""

    def __init__(self, history_size: int, *, max_users: int = MAX_USERS) -> None:
        self.users: dict[str, User] = {}  # in order of last update: the oldest first
        self.max_users = max(max_users, 1)
        self.users_dropped = 0
        self.history: deque[HistoryLine] = deque(maxlen=max(history_size, 1))
        self.now_playing: NowPlaying | None = None
        self._pending_uid: int | None = None
        self.last_event_at: float | None = None

    def apply(self, event: Event) -> None:
        """Fold a non-chat event into the state; other events are ignored."""
        self.last_event_at = time.monotonic()
        match event:
            case UserListEvent(users=users):
                self.users = {}
                self._put_all(users)
            case UserJoinEvent(user=user):
                self._put(user)
            case UserLeaveEvent(name=name):
                self.users.pop(name.lower(), None)
            case RankEvent(name=name, rank=rank):
                # After setUserRank only name and rank are known for sure (PROTOCOL.md §8).
                old = self.users.get(name.lower())
                self._put(replace(old, rank=rank) if old else User(name, rank))
            case AfkEvent(name=name, afk=afk):
                old = self.users.get(name.lower())
                if old is not None:
                    self._put(replace(old, afk=afk))
            case CurrentEvent(uid=uid):
                # setCurrent arrives just before changeMedia; attach it to the next one.
                self._pending_uid = uid
                if self.now_playing is not None and self.now_playing.uid is None:
                    self.now_playing.uid = uid
            case MediaEvent():
                self.now_playing = NowPlaying(
                    event, self._pending_uid, event.current_time, event.paused
                )
                self._pending_uid = None
            case MediaUpdateEvent(current_time=position, paused=paused):
                if self.now_playing is not None:
                    self.now_playing.position = position
                    self.now_playing.paused = paused
                    self.now_playing.updated_at = time.monotonic()
            case _:
                pass

    def _put(self, user: User) -> None:
        """Insert or refresh ``user`` as the most recent; drop the least recent over the cap."""
        key = user.name.lower()
        users = self.users
        users.pop(key, None)  # re-inserting moves the key to the end: most recently seen
        users[key] = user
        if len(users) > self.max_users:
            del users[next(iter(users))]
            self._dropped(1)

    def _put_all(self, users: Iterable[User]) -> None:
        for user in users:
            self._put(user)

    def _dropped(self, count: int) -> None:
        if self.users_dropped == 0:
            log.warning("channel_users_capped", max_users=self.max_users)
        self.users_dropped += count

    def add_chat(self, username: str, text: str, time_ms: int, *, from_bot: bool = False) -> None:
        """Remember one chat line (the bot's own replies included, as its turns)."""
        self.history.append(HistoryLine(username, text, time_ms, from_bot))

    def drop_lines_of(self, username: str) -> int:
        """Forget every chat line ``username`` wrote ("forget me"); returns how many went."""
        name = username.lower()
        kept = [line for line in self.history if line.username.lower() != name]
        dropped = len(self.history) - len(kept)
        self.history.clear()
        self.history.extend(kept)
        return dropped

    def rank_of(self, username: str) -> float:
        """The user's rank as last seen, 0 (guest) when unknown."""
        user = self.users.get(username.lower())
        return user.rank if user is not None else 0.0

    def recent(self, count: int) -> list[HistoryLine]:
        """The last ``count`` chat lines, oldest first."""
        if count <= 0:
            return []
        lines = list(self.history)
        return lines[-count:]
