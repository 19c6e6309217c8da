"""The live bot's memory: notes in RAM for the NATS callback, SQLite on a thread of its own.

The intake calls :meth:`Memory.take` on every message aimed at the bot and :meth:`Memory.recall`
for every queued reply. Both run in the NATS callback, so neither touches the disk: the notes
that can still be recalled (the age limit) are kept in a dictionary, loaded when the bot starts
and changed in place. Every SQLite call (store, delete, reload) runs on one worker thread, in a
task the callback does not wait for; a write that fails is logged with the store's path and
counted (``memory_total{event="write_failed"}``), never dropped silently.

The store is re-read when another process changed it (``kryten-llm memory forget`` while the
bot runs): :meth:`Memory.watch` asks SQLite every ``memory.refresh_seconds`` whether the file
changed. Settings are read from the object handed to each call, so a reload takes effect on
the next message.

What it does is counted by :class:`MemoryEvent` (``kryten_llm_memory_total{event}`` on
``/metrics``), and a "forget me" is a decision like a reply's: one response-log line with
reason ``forgotten``, written once the delete is committed (or failed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from enum import StrEnum
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from kryten_llm.errors import KrytenLLMError, MemoryStoreError
from kryten_llm.memory.commands import handle_memory_command
from kryten_llm.memory.extract import extract_facts
from kryten_llm.memory.requests import Forget, Refused, Remember, checked_fact, read_request
from kryten_llm.memory.store import MemoryStore, Note, Scope, Source
from kryten_llm.pipeline.decisions import Reason, TriggerMatch
from kryten_llm.pipeline.outcome import Outcome

if TYPE_CHECKING:
    from kryten_llm.bus.events import ChatEvent
    from kryten_llm.bus.sender import ChatSender
    from kryten_llm.config import ChannelConfig, MemoryConfig, Settings
    from kryten_llm.llm.manager import ProviderManager
    from kryten_llm.pipeline.state import ChannelState
    from kryten_llm.pipeline.stats import Flags, Stats

log = structlog.get_logger(__name__)
T = TypeVar("T")
DAY = 86400.0
_Key = tuple[str, str, str]
Record = Callable[[Outcome], object]  # writes a response-log line (the bot's ResponseLog.write)


class MemoryEvent(StrEnum):
    """What the memory did; values are the ``event`` label of the memory counter."""

    STORED = "stored"  # a note the user asked for
    EXTRACTED = "extracted"  # a note the extraction step found
    ALREADY_KNOWN = "already_known"
    REFUSED = "refused"  # a "remember" that could not be stored (too long, rank)
    FORGOTTEN = "forgotten"  # "forget me", committed
    WRITE_FAILED = "write_failed"
    READ_FAILED = "read_failed"  # the store could not be read back (another process's notes)
    EXTRACTION_SKIPPED = "extraction_skipped"  # too many waiting
    EXTRACTION_FAILED = "extraction_failed"


class Memory:
    """Notes about users and channels for the live bot (see the module docstring).

    Args:
        store: the open SQLite store (see :meth:`open`).
        sender: says the "forget me" confirmation; ``None`` only logs it.
        flags: the operator's switches (dry-run: nothing is said).
        stats: where :class:`MemoryEvent` counts go (``Stats.memory``).
        record: writes the response-log line of a "forget me".
        clock: wall-clock seconds (notes carry Unix times, so they age across restarts).
    """

    def __init__(
        self,
        store: MemoryStore,
        *,
        sender: ChatSender | None,
        flags: Flags,
        stats: Stats,
        record: Record,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._sender = sender
        self._flags = flags
        self._stats = stats
        self._record = record
        self._clock = clock
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="kryten-memory")
        self._notes: dict[_Key, list[Note]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._manager: ProviderManager | None = None
        self._extracting = 0
        self._version = 0
        self._changes = 0  # bumped by every change in RAM: a reload racing one is retried
        self._forgot: dict[str, float] = {}  # user -> when they said "forget me" (extraction)
        self._closed = False

    @classmethod
    def open(
        cls,
        config: MemoryConfig,
        *,
        sender: ChatSender | None,
        flags: Flags,
        stats: Stats,
        record: Record,
    ) -> Memory:
        """Open the store at ``config.path``, drop aged notes, load the rest (at startup).

        Raises:
            MemoryStoreError: the store cannot be used; it names the path.
        """
        store = MemoryStore.open(config.path)
        memory = cls(store, sender=sender, flags=flags, stats=stats, record=record)
        memory.store.purge(memory._clock() - config.max_age_days * DAY)
        memory._load(memory.store.notes())
        memory._version = memory.store.version()
        log.info("memory_loaded", path=str(config.path), notes=memory.size)
        return memory

    @property
    def size(self) -> int:
        """How many notes are held."""
        return sum(len(notes) for notes in self._notes.values())

    def attach(self, manager: ProviderManager) -> None:
        """Use ``manager`` for the optional extraction step (once the providers are built)."""
        self._manager = manager

    # -- the NATS callback's side: no disk ---------------------------------------------------

    def take(
        self,
        channel: ChannelConfig,
        chat: ChatEvent,
        *,
        rank: float,
        settings: Settings,
        state: ChannelState,
        trigger: TriggerMatch,
    ) -> bool:
        """Act on a message aimed at the bot; ``True`` when it was "forget me" (handled here).

        "remember ..." is stored (the reply goes ahead and already recalls it); "forget me"
        deletes every note about the sender, and their lines from the recent chat in
        ``state``, and is confirmed in chat, with no model asked. ``trigger`` names what fired
        in its response-log line.
        """
        config = settings.memory
        if not config.enabled:
            return False
        personality = settings.personality
        names = (personality.character_name, *personality.name_variations, settings.bot.username)
        request = read_request(chat.text, config, names=names, rank=rank)
        if isinstance(request, Forget):
            state.drop_lines_of(chat.username)
            self._forget(channel, chat, config, trigger)
            return True
        if isinstance(request, Remember):
            self._remember(channel, chat.username, request, config, Source.SAID)
        elif isinstance(request, Refused):
            self._count(MemoryEvent.REFUSED)
            log.info("memory_refused", username=chat.username, reason=str(request.reason))
        elif config.extraction.enabled:
            self._extract(channel, chat, config)
        return False

    def recall(
        self, channel: ChannelConfig, username: str, trigger: TriggerMatch, settings: Settings
    ) -> tuple[Note, ...]:
        """The notes for a reply to ``username``: theirs, then the channel's, newest first.

        Empty when memory is off or when a provider that may answer this reply is not in
        ``memory.providers``: notes never reach a provider the operator has not allowed.
        """
        config = settings.memory
        if not config.enabled:
            return ()
        chain = trigger.providers or settings.llm.chain
        if not set(chain) <= set(config.providers):
            return ()
        since = self._clock() - config.max_age_days * DAY
        domain, name = channel.domain, channel.channel.lower()
        mine = self._newest((domain, name, username.lower()), since, config.recall_per_user)
        ours = self._newest((domain, name, ""), since, config.recall_per_channel)
        return (*mine, *ours)

    def _newest(self, key: _Key, since: float, count: int) -> list[Note]:
        notes = self._notes.get(key, ())
        return [note for note in reversed(notes) if note.created_at >= since][:count]

    def _remember(
        self,
        channel: ChannelConfig,
        username: str,
        request: Remember,
        config: MemoryConfig,
        source: Source,
    ) -> None:
        user_note = request.scope is Scope.USER
        note = Note(
            domain=channel.domain,
            channel=channel.channel.lower(),
            scope=request.scope,
            about=username.lower() if user_note else "",
            author=username,
            text=request.fact,
            source=source,
            created_at=self._clock(),
        )
        keep = config.max_notes_per_user if user_note else config.max_notes_per_channel
        held = self._notes.setdefault(note.key, [])
        if any(known.text.casefold() == note.text.casefold() for known in held):
            self._count(MemoryEvent.ALREADY_KNOWN)
            log.info("memory_already_known", username=username, source=str(source))
            return
        held.append(note)
        del held[:-keep]
        self._changes += 1
        self._count(MemoryEvent.EXTRACTED if source is Source.EXTRACTED else MemoryEvent.STORED)
        log.info("memory_stored", username=username, scope=str(note.scope), source=str(source))
        self._spawn(self._write(partial(self.store.add, note, keep=keep)))

    def _forget(
        self, channel: ChannelConfig, chat: ChatEvent, config: MemoryConfig, trigger: TriggerMatch
    ) -> None:
        self._drop(chat.username, channel.domain)
        self._forgot[chat.username.lower()] = self._clock()
        reply = config.forget_reply.format(user=chat.username)
        outcome = Outcome.of(channel, chat, trigger, Reason.FORGOTTEN)
        self._spawn(self._forget_and_confirm(channel, chat, reply, outcome))

    def _drop(self, user: str, domain: str | None) -> None:
        """Remove from RAM every note about ``user`` or written by them."""
        name = user.lower()
        self._changes += 1
        for key, notes in list(self._notes.items()):
            if domain is not None and key[0] != domain:
                continue
            kept = [n for n in notes if n.about != name and n.author.lower() != name]
            if kept:
                self._notes[key] = kept
            else:
                del self._notes[key]

    def _extract(self, channel: ChannelConfig, chat: ChatEvent, config: MemoryConfig) -> None:
        if self._manager is None or config.extraction.provider is None:
            return
        if self._extracting >= config.extraction.max_pending:
            self._count(MemoryEvent.EXTRACTION_SKIPPED)
            log.info("memory_extraction_skipped", reason="busy", username=chat.username)
            return
        self._extracting += 1
        self._spawn(self._extract_and_store(channel, chat, config))

    # -- background work ------------------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, object]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, call: Callable[[], T]) -> T:
        """``call`` on the memory's thread: every SQLite call goes through here."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _count(self, event: MemoryEvent) -> None:
        self._stats.memory[event] += 1

    async def _write(self, call: Callable[[], object]) -> bool:
        try:
            await self._run(call)
        except MemoryStoreError as exc:
            self._count(MemoryEvent.WRITE_FAILED)
            log.error("memory_write_failed", path=exc.path, error=exc.reason)
            return False
        return True

    async def _forget_and_confirm(
        self, channel: ChannelConfig, chat: ChatEvent, reply: str, outcome: Outcome
    ) -> None:
        forgotten = partial(self.store.forget, chat.username, channel.domain)
        if not await self._write(forgotten):
            # nothing is confirmed that did not happen; the error is logged with the path
            self._record(replace(outcome, error="the memory store could not be written"))
            return
        self._count(MemoryEvent.FORGOTTEN)
        log.info("memory_forgotten", username=chat.username)
        if self._sender is None or self._flags.dry_run or self._flags.paused:
            log.info("memory_forget_confirmation_dry_run", parts=[reply])
            said = replace(outcome, dry_run=True) if self._flags.dry_run else outcome
            self._record(replace(said, parts=(reply,) if self._flags.dry_run else None))
            return
        if chat.is_pm:
            sent = await self._sender.pm(channel, chat.username, reply)
        else:
            sent = await self._sender.say(channel, reply)
        ack = None if sent.ack in ("accepted", "not_requested") else sent.ack
        self._record(replace(outcome, parts=(reply,), request_ids=(sent.request_id,), ack=ack))

    async def _extract_and_store(
        self, channel: ChannelConfig, chat: ChatEvent, config: MemoryConfig
    ) -> None:
        extraction = config.extraction
        started = self._clock()
        try:
            assert self._manager is not None
            assert extraction.provider is not None
            facts = await extract_facts(
                self._manager, extraction.provider, chat.text, config=extraction
            )
        except KrytenLLMError as exc:
            self._count(MemoryEvent.EXTRACTION_FAILED)
            log.info("memory_extraction_failed", error=str(exc))
            return
        finally:
            self._extracting -= 1
        if self._forgot.get(chat.username.lower(), -1.0) >= started:
            return  # they said "forget me" while the provider was reading their message
        for fact in facts:
            checked = checked_fact(fact, config, Scope.USER)
            if isinstance(checked, Remember):
                self._remember(channel, chat.username, checked, config, Source.EXTRACTED)

    # -- lifecycle and the operator -------------------------------------------------------

    async def watch(self, config: Callable[[], MemoryConfig]) -> None:
        """Until cancelled: reload when another process wrote to the store; age notes out."""
        while True:
            current = config()
            await asyncio.sleep(current.refresh_seconds)
            try:
                version = await self._run(self.store.version)
                if version != self._version:
                    await self._reload(current)
            except MemoryStoreError as exc:
                self._count(MemoryEvent.READ_FAILED)
                log.error("memory_read_failed", path=exc.path, error=exc.reason)

    async def _reload(self, config: MemoryConfig) -> None:
        since = self._clock() - config.max_age_days * DAY
        changes = self._changes
        version = await self._run(self.store.version)
        notes = await self._run(partial(self.store.notes, since=since))
        if changes != self._changes:
            return  # a note came or went meanwhile and may not be in ``notes``: next time
        self._version = version
        self._load(notes)
        log.info("memory_reloaded", notes=self.size)

    def _load(self, notes: Sequence[Note]) -> None:
        loaded: dict[_Key, list[Note]] = {}
        for note in notes:
            loaded.setdefault(note.key, []).append(note)
        self._notes = loaded

    async def command(self, payload: object) -> dict[str, Any]:
        """An operator's memory command (see :func:`handle_memory_command`), run off the loop;
        a ``forget`` also drops the user's notes from RAM at once."""
        result = await self._run(partial(handle_memory_command, self.store, payload))
        if result.get("ok") and result.get("action") == "forget":
            self._drop(str(result["user"]), result.get("domain"))
        return result

    async def settle(self) -> None:
        """Wait until every write and confirmation started so far is done (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Finish pending writes, then close the store; harmless twice."""
        await self.settle()
        if self._closed:
            return
        self._closed = True
        await self._run(self.store.close)
        self._executor.shutdown(wait=True)
