"""Intake pieces without NATS: subjects, filters, channel state, prompt, job queue."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from kryten_llm.bus.events import (
    ChatEvent,
    CurrentEvent,
    Envelope,
    MediaEvent,
    MediaUpdateEvent,
    RankEvent,
    User,
    UserJoinEvent,
    UserLeaveEvent,
    UserListEvent,
)
from kryten_llm.bus.subjects import channel_events, event_subject, normalize_token
from kryten_llm.config import FiltersConfig
from kryten_llm.pipeline import filters
from kryten_llm.pipeline.decisions import Reason
from kryten_llm.pipeline.filters import IntakeFilter
from kryten_llm.pipeline.jobs import Job, JobQueue
from kryten_llm.pipeline.state import MAX_USERS, ChannelState

ENV = Envelope("chatMsg", "MyChannel", "cytu.be", "2026-11-22T08:12:29+00:00", "c-1")
NOW_MS = int(time.time() * 1000)


def chat(username: str, text: str, **kw: object) -> ChatEvent:
    fields: dict[str, object] = {"raw": text, "time_ms": NOW_MS} | kw
    return ChatEvent(ENV, username, text, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "token"),
    [
        pytest.param("MyChannel", "mychannel", id="lower-cased"),
        pytest.param("420Grindhouse", "420grindhouse", id="digits"),
        pytest.param("Q_A", "q_a", id="underscore-kept"),
        pytest.param("My Channel!", "my-channel", id="space-and-bang"),
        pytest.param("a.b*c>d", "abcd", id="wildcards-and-dots-removed"),
        pytest.param("chatMsg", "chatmsg", id="event-name"),
    ],
)
def test_tokens_are_normalised_like_the_bridge(raw: str, token: str) -> None:
    assert normalize_token(raw) == token


def test_subjects_follow_the_protocol() -> None:
    assert channel_events("MyChannel") == "kryten.events.cytube.mychannel.>"
    assert event_subject("MyChannel", "setUserRank") == "kryten.events.cytube.mychannel.setuserrank"


def make_filter(**kw: object) -> IntakeFilter:
    return IntakeFilter(FiltersConfig(**kw), "CynthiaRothbot", started_at_ms=NOW_MS - 1000)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        pytest.param(chat("cynthiaROTHBOT", "hi"), Reason.OWN_MESSAGE, id="own-echo-any-case"),
        pytest.param(chat("[server]", "x joined"), Reason.SERVER_NOTICE, id="server"),
        pytest.param(
            chat("mod", "x", css_class="server-whisper"), Reason.SERVER_NOTICE, id="whisper"
        ),
        pytest.param(chat("m", "hi", shadow=True), Reason.SHADOW_MUTED, id="shadow"),
        pytest.param(chat("u", "hi", time_ms=NOW_MS - 60_000), Reason.REPLAY, id="replay"),
        pytest.param(chat("u", "!skip"), Reason.COMMAND, id="bang-command"),
        pytest.param(chat("u", "/me waves"), Reason.COMMAND, id="slash-command"),
        pytest.param(chat("u", "   "), Reason.EMPTY, id="blank"),
        pytest.param(chat("SomeBot", "hi"), Reason.IGNORED_USER, id="ignored-user"),
    ],
)
def test_messages_the_bot_must_ignore(event: ChatEvent, reason: Reason) -> None:
    assert make_filter(ignored_users=["somebot"]).check(event) is reason


@pytest.mark.parametrize("text", ["...lol", "!!!", "hey cynthia", "/", "$5 says no", "1/2 done"])
def test_text_that_only_looks_like_a_command_passes(text: str) -> None:
    assert make_filter().check(chat("u", text)) is None


def test_a_message_seen_twice_is_a_duplicate() -> None:
    f = make_filter()
    assert f.check(chat("u", "hello")) is None
    assert f.check(chat("u", "hello")) is Reason.DUPLICATE
    assert f.check(chat("u", "hello", time_ms=NOW_MS + 1)) is None


def test_the_duplicate_filter_forgets_the_oldest_line_past_its_capacity() -> None:
    f = make_filter()
    lines = [chat("u", f"line {i}") for i in range(filters._SEEN_CAPACITY + 1)]
    assert [f.check(line) for line in lines] == [None] * len(lines)
    assert f.check(lines[1]) is Reason.DUPLICATE  # still remembered
    assert f.check(lines[0]) is None  # forgotten: the oldest went when the last came
    assert len(f._seen) == filters._SEEN_CAPACITY


def test_state_tracks_users_ranks_and_leaves() -> None:
    state = ChannelState(10)
    state.apply(UserListEvent(ENV, (User("Alice", 1), User("Bob", 0))))
    state.apply(UserJoinEvent(ENV, User("carol", 2)))
    state.apply(RankEvent(ENV, "bob", 1.5))
    state.apply(UserLeaveEvent(ENV, "ALICE"))
    assert state.rank_of("BOB") == 1.5
    assert state.rank_of("carol") == 2
    assert state.rank_of("alice") == 0  # gone: unknown users are guests
    assert set(state.users) == {"bob", "carol"}


def test_set_current_uid_is_attached_to_the_next_change_media() -> None:
    state = ChannelState(10)
    state.apply(CurrentEvent(ENV, 42))
    state.apply(MediaEvent(ENV, "abc", "Plan 9", 4740, "1:19:00", "yt"))
    state.apply(MediaUpdateEvent(ENV, 61.5, True))
    assert state.now_playing is not None
    assert state.now_playing.uid == 42
    assert state.now_playing.media.title == "Plan 9"
    assert state.now_playing.position == 61.5
    assert state.now_playing.paused is True


def test_history_is_bounded() -> None:
    state = ChannelState(3)
    for i in range(10):
        state.add_chat("u", f"line {i}", i)
    assert [line.text for line in state.recent(5)] == ["line 7", "line 8", "line 9"]
    assert state.recent(0) == []


async def test_full_job_queue_drops_the_oldest() -> None:
    queue = JobQueue(2)
    jobs = [
        Job(None, chat(f"u{i}", "x"), None, 0.0, 1.0)  # type: ignore[arg-type]
        for i in range(3)
    ]
    assert queue.put(jobs[0]) is None
    assert queue.put(jobs[1]) is None
    assert queue.put(jobs[2]) is jobs[0]
    assert await queue.get() is jobs[1]
    queue.done()
    assert queue.drain() == [jobs[2]]
    await asyncio.wait_for(queue.wait_idle(), 1)


async def test_a_place_is_held_only_while_a_worker_is_free() -> None:
    """With two workers, a third hold waits until a job is finished; places given back or
    filled count like jobs, and a job dropped from a full queue frees its place."""
    queue = JobQueue(2)
    jobs = [
        Job(None, chat(f"u{i}", "x"), None, 0.0, 1.0)  # type: ignore[arg-type]
        for i in range(3)
    ]
    await queue.hold(2)
    queue.put(jobs[0], held=True)
    await queue.hold(2)
    assert queue.unfinished == 2
    third = asyncio.create_task(queue.hold(2))
    await asyncio.sleep(0)
    assert not third.done()  # both workers' places are taken
    queue.unhold()  # the second place given back (its claim was lost): the third gets it
    await asyncio.wait_for(third, 1)
    assert queue.unfinished == 2
    queue.put(jobs[1], held=True)
    fourth = asyncio.create_task(queue.hold(2))
    await asyncio.sleep(0)
    assert not fourth.done()
    assert await queue.get() is jobs[0]
    queue.done()  # a worker finished: room again
    await asyncio.wait_for(fourth, 1)
    queue.put(jobs[2], held=True)
    assert queue.unfinished == 2
    assert queue.drain() == [jobs[1], jobs[2]]
    assert queue.unfinished == 0
    # A job dropped to make room in a full queue frees its place too.
    small = JobQueue(1)
    await small.hold(5)
    small.put(jobs[0], held=True)
    await small.hold(5)
    assert small.put(jobs[1], held=True) is jobs[0]
    assert small.unfinished == 1


def test_a_failing_response_listener_does_not_stop_the_log(tmp_path: Path) -> None:
    """A listener that raises (a closed terminal, say) is skipped; the outcome is still kept."""
    from kryten_llm.bot.responselog import ResponseLog
    from kryten_llm.pipeline.outcome import Outcome

    seen: list[Outcome] = []

    def broken(outcome: Outcome) -> None:
        raise BrokenPipeError

    log = ResponseLog(tmp_path)
    log.add_listener(broken)
    log.add_listener(seen.append)
    log.write(
        Outcome(
            "c1",
            "MyChannel",
            "cytu.be",
            "bob",
            None,
            "chat",
            "hi",
            "mention",
            "mention",
            Reason.ANSWERED,
        )
    )
    log.close()
    assert [o.reason for o in seen] == [Reason.ANSWERED]
    assert seen[0].logged_at is not None
    assert '"reason": "answered"' in next(tmp_path.glob("responses-*.jsonl")).read_text()


JOIN_ENV = Envelope("addUser", "MyChannel", "cytu.be", "", "")


def test_the_user_table_is_bounded_and_drops_the_least_recent() -> None:
    state = ChannelState(10, max_users=100)
    state.apply(UserJoinEvent(JOIN_ENV, User("keeper", 2)))
    for i in range(1000):
        state.apply(UserJoinEvent(JOIN_ENV, User(f"u{i}", 0)))
        if i % 50 == 0:  # keeper keeps being seen, so it is never the least recent
            state.apply(RankEvent(JOIN_ENV, "keeper", 3))
    assert len(state.users) == 100
    assert state.users_dropped == 901
    assert state.rank_of("keeper") == 3
    assert "u999" in state.users
    assert "u0" not in state.users


def test_200000_joins_keep_the_default_cap() -> None:
    state = ChannelState(10)
    for i in range(200_000):
        state.apply(UserJoinEvent(JOIN_ENV, User(f"user{i}", 0)))
    assert len(state.users) == MAX_USERS
    assert state.users_dropped == 200_000 - MAX_USERS


async def test_ordinary_chat_is_handled_at_once_and_a_failure_later_is_counted(
    tmp_path: Path,
) -> None:
    """An ordinary line is done when ``handle`` returns (no coroutine); a mention comes back as
    one, and a bug in the decisions after the filters is logged and counted, never raised."""
    from kryten_llm.bot.assembly import Bot
    from kryten_llm.bot.responselog import ResponseLog
    from tests.conftest import settings_for
    from tests.fuzzwire import chat_payload, raw_envelope

    class BrokenMemory:
        def take(self, *args: object, **kwargs: object) -> bool:
            raise RuntimeError("a bug in the decisions")

    bot = Bot(
        settings_for("nats://127.0.0.1:4222", tmp_path),
        sender=None,
        response_log=ResponseLog(tmp_path),
    )
    bot.intake.memory = BrokenMemory()  # type: ignore[assignment]
    channel = next(iter(bot.channels.values()))
    subject = "kryten.events.cytube.mychannel.chatmsg"
    now = str(int(time.time() * 1000) + 1000)
    ordinary = raw_envelope("chatMsg", chat_payload("just chatting", now))
    assert bot.intake.handle(channel, subject, ordinary) is None
    assert [line.text for line in channel.state.history] == ["just chatting"]
    mention = raw_envelope("chatMsg", chat_payload("cynthia, are you there?", now, "bob"))
    rest = bot.intake.handle(channel, subject, mention)
    assert rest is not None
    await rest
    assert (bot.stats["chat"], bot.stats["events_failed"]) == (2, 1)


def test_a_line_after_close_is_kept_and_leaves_no_file_open(tmp_path: Path) -> None:
    """At shutdown a claim may answer after the log was closed: its line still lands, and
    the log holds no file afterwards (it used to reopen one that nobody closed)."""
    from kryten_llm.bot.responselog import ResponseLog
    from kryten_llm.pipeline.outcome import Outcome

    log = ResponseLog(tmp_path)

    def line(username: str) -> Outcome:
        return Outcome(
            "c1", "MyChannel", "cytu.be", username, None, "chat", "hi", "mention", "mention",
            Reason.SHUTDOWN,
        )  # fmt: skip

    log.write(line("bob"))
    log.close()
    log.write(line("alice"))
    assert log.path is None
    (written,) = tmp_path.glob("responses-*.jsonl")
    assert [json.loads(x)["username"] for x in written.read_text().splitlines()] == [
        "bob",
        "alice",
    ]
