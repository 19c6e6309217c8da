"""Admission: whether this instance answers a triggered message, between the NATS callback and
the job queue.

A triggered message passes the claim (exactly one instance of a cluster answers it), the share
budget and the rate limits, and then goes onto the bounded
:class:`~kryten_llm.pipeline.jobs.JobQueue`; a refusal gets its response-log line, written by
the instance that won the claim only.

The claim and shared rate-limit windows live in JetStream KV, so deciding may wait on the
network. The NATS callback must not (a slow JetStream would hold every later event of the
channel), so when a decision can wait it is made in the channel's **lane**: a FIFO of messages
waiting for their decision and a task that decides them one by one, in arrival order, and ends
when the lane is empty. The claim is made first (a message answered elsewhere never waits for
the rate limiter); the limits are decided on a watched copy of the shared windows (no read over
the network), and the hit of a won claim is recorded while the worker prepares the reply
(:attr:`Job.admitted <kryten_llm.pipeline.jobs.Job.admitted>`: nothing is said before it is
recorded); the lane lets the writes leave before the worker starts. An instance alone in the
registry sends the hit together with the claim (one write to the socket) and queues the job
without waiting for either: nothing is said before the claim is won
(:attr:`Job.claimed <kryten_llm.pipeline.jobs.Job.claimed>`), and a claim lost after all takes
the hit back and leaves the message, and its log line, to the instance that won it. When
nothing can wait (no cluster: no claim, hits in memory) the decision is made inline in the
callback, as cheap as before.

With peers, an instance claims a message only once one of its workers is free for the reply
(:meth:`JobQueue.hold <kryten_llm.pipeline.jobs.JobQueue.hold>`), and a lane that won a claim
lets the peers go first on its next message, so that instances with room win the race and the
work spreads by what each can take.

A lane holds at most ``processing.queue_size`` messages; when it is full the oldest waiting one
is dropped with the outcome ``queue_overflow`` (the job queue's policy: a late answer is worth
less than a prompt one).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from kryten_llm.cluster.message import MessageClaim
from kryten_llm.pipeline.decisions import RateDecision, Reason
from kryten_llm.pipeline.jobs import Job, JobQueue
from kryten_llm.pipeline.outcome import Outcome
from kryten_llm.pipeline.stats import Count

if TYPE_CHECKING:
    from kryten_llm.bot.character import Character
    from kryten_llm.bot.conversation import Conversation
    from kryten_llm.bot.responselog import ResponseLog
    from kryten_llm.bus.events import ChatEvent
    from kryten_llm.cluster import Coordinator
    from kryten_llm.config import ChannelConfig, Settings
    from kryten_llm.pipeline.decisions import TriggerMatch
    from kryten_llm.pipeline.prompt import PromptInput
    from kryten_llm.pipeline.stats import Flags, Stats

log = structlog.get_logger(__name__)

_YIELD_AFTER_WIN = 0.001  # seconds a won claim holds back the lane's next claim (with peers)
_TURNS_TO_SEND = 2  # the recording task starts the writes' tasks, which then publish them


@dataclass(frozen=True, slots=True)
class Candidate:
    """A triggered message waiting for its decision.

    Attributes:
        channel: where it came from.
        character: the character that decided it (even if a reload replaced it meanwhile).
        chat: the message.
        prompt: the context snapshot taken when it arrived.
        rank: the sender's rank (``None``: a comment on a video, answering nobody).
        received_at: ``time.monotonic()`` when it arrived: its reply deadline counts from here.
    """

    channel: ChannelConfig
    character: Character
    chat: ChatEvent
    prompt: PromptInput
    rank: float | None
    received_at: float


@dataclass(frozen=True, slots=True)
class _Won:
    """A claim this instance won with peers: the lane's next claim waits for ``recording``
    (the hit being written) and until ``until`` (monotonic)."""

    recording: asyncio.Future[RateDecision] | None
    until: float


@dataclass(slots=True)
class _Lane:
    waiting: deque[Candidate] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None


class Admission:
    """Decides triggered messages: inline, or in their channel's lane when deciding may wait.

    Args:
        settings: ``processing`` is read (reply deadline, lane capacity).
        queue: where admitted jobs go.
        response_log, stats, flags: where refusals are written and counted.
        conversation: the share budget (conv14).
        closed: why nothing is admitted now (paused, shutting down), or ``None``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        queue: JobQueue,
        response_log: ResponseLog,
        stats: Stats,
        flags: Flags,
        conversation: Conversation,
        closed: Callable[[], Reason | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._queue = queue
        self._log = response_log
        self._stats = stats
        self._flags = flags
        self._conversation = conversation
        self._closed = closed
        self._clock = clock
        self._lanes: dict[str, _Lane] = {}
        self.cluster: Coordinator | None = None  # several instances: set by the assembly
        self.reconfigure(settings)

    def reconfigure(self, settings: Settings) -> None:
        """Decide with ``settings`` from the next message on."""
        self._budget = settings.processing.reply_deadline_seconds
        self._capacity = settings.processing.queue_size
        self._workers = settings.processing.workers

    async def submit(
        self,
        channel: ChannelConfig,
        character: Character,
        chat: ChatEvent,
        prompt: PromptInput,
        rank: float | None,
    ) -> None:
        """Decide ``chat`` now when that cannot wait on the network, else in its lane."""
        candidate = Candidate(channel, character, chat, prompt, rank, self._clock())
        cluster = self.cluster
        if cluster is None or cluster.claims is None:
            await self._decide(candidate)
            return
        lane = self._lanes.get(channel.key)
        if lane is None:
            lane = self._lanes[channel.key] = _Lane()
        if len(lane.waiting) >= self._capacity:
            self._overflow(lane.waiting.popleft())
        lane.waiting.append(candidate)
        if lane.task is None:
            lane.task = asyncio.create_task(self._drain(lane), name=f"admission {channel.key}")

    async def settle(self, grace: float) -> None:
        """Shutting down (nothing is admitted any more): let the lanes decide what waits in
        them (each refused ``shutdown`` before it is claimed) within ``grace`` seconds; a lane still
        waiting on JetStream then is stopped, its message refused ``shutdown`` too."""
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=grace)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    async def _drain(self, lane: _Lane) -> None:
        """Decide the lane's messages in order; end when it is empty (a new one starts again)."""
        try:
            won: _Won | None = None
            while lane.waiting:
                candidate = lane.waiting.popleft()
                if won is not None:
                    # With peers, an instance that just won a claim here lets them go first
                    # on the next message (its hit written, and a moment more): it does not
                    # win every next one by a round trip's head start, so the replies spread.
                    if won.recording is not None:
                        await asyncio.wait([won.recording])
                    if (pause := won.until - self._clock()) > 0:
                        await asyncio.sleep(pause)
                try:
                    won = await self._decide(candidate)
                except asyncio.CancelledError:  # stopping (see settle): its line, then out
                    self.refuse(
                        candidate.channel, candidate.chat, candidate.prompt.trigger, Reason.SHUTDOWN
                    )
                    raise
                except Exception:  # a bug of ours: this message only, never the lane
                    self._stats.totals[Count.EVENTS_FAILED] += 1
                    log.exception(
                        "admission_failed",
                        correlation_id=candidate.chat.envelope.correlation_id,
                        channel=candidate.channel.channel,
                    )
        finally:
            lane.task = None

    async def _decide(self, candidate: Candidate) -> _Won | None:
        """Decide ``candidate``; with peers, what the lane's next claim waits for if won.

        With peers the claim is a race: it is made only with a worker free for the reply (a
        place held in the job queue, filled by the job or given back), so that the instances
        with room win it and the work spreads by what each can take.
        """
        cluster = self.cluster
        clustered = cluster is not None and cluster.claims is not None
        # Alone in the registry: the hit goes out with the claim (one round trip).
        alone = cluster is None or cluster.alone
        if not clustered or alone:
            return (await self._judge(candidate, clustered=clustered, alone=alone))[0]
        assert cluster is not None
        if not cluster.serves(candidate.channel):  # sharded: another instance's channel
            self._stats.decisions[Reason.ANSWERED_ELSEWHERE] += 1
            return None
        if self._refused_unclaimed(candidate):
            return None
        await self._queue.hold(self._workers)
        queued = False
        try:
            if self._refused_unclaimed(candidate):  # paused or stopping while it waited
                return None
            won, queued = await self._judge(candidate, clustered=True, alone=False, held=True)
            return won
        finally:
            if not queued:
                self._queue.unhold()

    def _refused_unclaimed(self, candidate: Candidate) -> bool:
        """Paused or shutting down: refuse without claiming, so that a peer still running can
        answer it (every instance writes its own line, as the intake does for a closed bot)."""
        closed = self._closed()
        if closed is None:
            return False
        self.refuse(candidate.channel, candidate.chat, candidate.prompt.trigger, closed)
        return True

    async def _judge(
        self, candidate: Candidate, *, clustered: bool, alone: bool, held: bool = False
    ) -> tuple[_Won | None, bool]:
        """Claim, share budget, rate limits, then the job queue: what the lane's next claim
        waits for (see :meth:`_decide`), and whether a job was queued."""
        channel, character, chat = candidate.channel, candidate.character, candidate.chat
        trigger = candidate.prompt.trigger
        claim = MessageClaim(self.cluster, channel, chat) if self.cluster is not None else None
        refused = self._conversation.refusal(channel.key, trigger, character.settings)
        recording = None
        if refused is not None:  # conv14: unasked replies give way to the share budget first
            decision = RateDecision(False, refused, 0.0)
        else:
            decision, recording = await character.limiter.admit(
                username=chat.username,
                rank=candidate.rank or 0.0,
                trigger=trigger,
                # alone, the claim is sent with the hit; with peers it is waited for first
                claim=(claim.send if alone else claim.won) if clustered and claim else None,
                optimistic=alone,
            )
        if recording is not None and decision.allowed:
            # Two turns of the loop: the hit's writes (and, alone, the claim) are sent before
            # the worker starts on the reply, so JetStream answers while the reply is prepared.
            for _ in range(_TURNS_TO_SEND):
                await asyncio.sleep(0)
        claimed = None
        if clustered and claim is not None:
            pending = claim.pending
            if pending is not None and decision.allowed and self._closed() is None:
                # Alone: the reply is prepared while the claim is answered; nothing is said
                # before (Job.claimed), and a message answered elsewhere after all is counted
                # here, its room in the share of chat given back.
                pending.add_done_callback(lambda done: self._claimed_late(candidate, done))
                claimed = pending
            elif elsewhere := await claim.answer():  # made now if the limiter refused first
                if elsewhere is Reason.ANSWERED_ELSEWHERE:  # that instance writes the log line
                    self._stats.decisions[elsewhere] += 1
                else:
                    self.refuse(channel, chat, trigger, elsewhere)
                return None, False
        won = None if alone else _Won(recording, self._clock() + _YIELD_AFTER_WIN)
        if not decision.allowed:
            self._rate_limited(candidate, decision)
            return won, False
        closed = self._closed()
        if closed is not None:  # paused or shutting down while this one was decided
            self.refuse(channel, chat, trigger, closed)
            return won, False
        self._conversation.reserve(channel.key, chat, character.settings)  # conv14
        job = Job(
            channel=channel,
            chat=chat,
            prompt=candidate.prompt,
            received_at=candidate.received_at,
            deadline=candidate.received_at + self._budget,
            admitted=recording,  # the worker prepares the reply while the hit is recorded
            claimed=claimed,
        )
        dropped = self._queue.put(job, held=held)
        if dropped is not None:
            self.drop(dropped, Reason.QUEUE_OVERFLOW, "reply_dropped_queue_full")
        return won, True

    def _claimed_late(self, candidate: Candidate, answer: asyncio.Future[Reason | None]) -> None:
        """A claim answered after its job was queued: when another instance answers the
        message, count it and give back its room in the share of chat (the job says nothing
        and writes no line: that instance does); ``claim_failed`` is the job's own line."""
        if not answer.cancelled() and answer.result() is Reason.ANSWERED_ELSEWHERE:
            self._stats.decisions[Reason.ANSWERED_ELSEWHERE] += 1
            self._conversation.annotate(
                Outcome.of(
                    candidate.channel,
                    candidate.chat,
                    candidate.prompt.trigger,
                    Reason.ANSWERED_ELSEWHERE,
                )
            )

    def drop(self, job: Job, reason: Reason, event: str) -> None:
        """A queued job that will not be answered (pushed out of the full queue, or the bot
        stops): counted and logged as ``reason`` (or the claim's own failure) once its claim,
        if still in flight, has answered; not at all when another instance answers the
        message (that instance writes the line; :meth:`_claimed_late` counted it)."""

        def settle(said: Reason | None) -> None:
            if said is not Reason.ANSWERED_ELSEWHERE:
                log.warning(event, dropped_username=job.chat.username, reason=(said or reason))
                self.refuse(job.channel, job.chat, job.prompt.trigger, said or reason)

        job.after_claim(settle)

    def _rate_limited(self, candidate: Candidate, decision: RateDecision) -> None:
        chat = candidate.chat
        self._stats.decisions[Reason.RATE_LIMITED] += 1
        log.info(
            "reply_rate_limited",
            username=chat.username,
            limit=decision.limit,
            retry_after=round(decision.retry_after, 3),
        )
        outcome = Outcome.of(
            candidate.channel,
            chat,
            candidate.prompt.trigger,
            Reason.RATE_LIMITED,
            rank=candidate.rank,
        )
        self._log.write(outcome.rate_limited(decision, dry_run=self._flags.dry_run))

    def _overflow(self, candidate: Candidate) -> None:
        """A lane was full: its oldest message is not decided here (nor claimed)."""
        log.warning("reply_dropped_lane_full", dropped_username=candidate.chat.username)
        self.refuse(
            candidate.channel, candidate.chat, candidate.prompt.trigger, Reason.QUEUE_OVERFLOW
        )

    def refuse(
        self, channel: ChannelConfig, chat: ChatEvent, trigger: TriggerMatch, reason: Reason
    ) -> None:
        """Count and log a message this instance does not answer, and why."""
        self._stats.decisions[reason] += 1
        self._log.write(Outcome.of(channel, chat, trigger, reason))
