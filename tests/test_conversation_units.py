"""The conversation stages on their own: share window, decay curve, follow-ups, titles, claims."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from kryten_llm.bus.claims import FileClaimStore
from kryten_llm.cluster.seen import claim_key
from kryten_llm.config import ParticipationConfig, load_settings
from kryten_llm.config.conversation import FollowUpConfig
from kryten_llm.errors import ConfigError, StoreError
from kryten_llm.pipeline.followup import FollowUps
from kryten_llm.pipeline.media import MAX_TITLE_CHARS, bounded_title, up_next
from kryten_llm.pipeline.participation import Participation, decay_factor, is_room_question
from kryten_llm.pipeline.share import ShareTracker


def test_share_counts_the_bots_lines_over_the_last_messages_only() -> None:
    """The window forgets old lines, the bot's included, so the share recovers."""
    share = ShareTracker(window=10)
    share.add(from_bot=True)
    share.add(count=4)
    assert share.share == pytest.approx(1 / 5)
    share.add(count=9)  # the bot's line drops out of the window
    assert share.messages == 10
    assert share.bot_messages == 0
    assert share.share == 0.0


def test_share_reservations_count_until_settled() -> None:
    """An approved reply holds its room; settling it counts what was actually sent."""
    share = ShareTracker(window=100)
    share.add(count=60)
    assert share.fits(3, 0.05)  # 3 of 63 is under 5 %
    share.reserve("a", 3)
    assert not share.fits(3, 0.05)  # 6 of 66 is not
    share.settle("a", 1)
    assert share.pending == 0
    assert share.bot_messages == 1
    assert share.fits(2, 0.05)  # 3 of 63


def test_replies_with_the_same_correlation_id_each_hold_their_room() -> None:
    """The bridge may send an empty correlation id: two replies under one key are both held,
    and each settle releases one of them."""
    share = ShareTracker(window=100)
    share.add(count=60)
    share.reserve("", 3)
    share.reserve("", 2)
    assert (share.pending, share.held) == (2, 5)
    assert not share.fits(1, 0.09)  # 6 of 66 is over 9 %
    share.settle("", 3)
    assert (share.pending, share.held, share.bot_messages) == (1, 2, 3)
    share.settle("", 0)
    share.settle("", 1)  # nothing held any more: only what was sent counts
    share.settle("unknown", 0)
    assert (share.pending, share.held, share.bot_messages) == (0, 0, 4)
    assert share.fits(1, 0.09)  # 5 of 65


def test_a_refusal_of_another_message_with_the_same_id_releases_no_room() -> None:
    """Two messages sent with an empty correlation id: the refusal written for the second
    (rate limited) leaves the room held for the first's reply; its own outcome releases it."""
    from kryten_llm.bot.conversation import Conversation
    from kryten_llm.bus.events import ChatEvent, Envelope
    from kryten_llm.pipeline.decisions import Reason, TriggerMatch
    from kryten_llm.pipeline.outcome import Outcome

    settings = load_settings(None, channels=[{"domain": "cytu.be", "channel": "MyChannel"}])
    channel = settings.channels[0]
    envelope = Envelope("chatMsg", "MyChannel", "cytu.be", "", "")
    first = ChatEvent(envelope, "alice", "cynthia, hi?", "cynthia, hi?", 0)
    second = ChatEvent(envelope, "bob", "cynthia, and me?", "cynthia, and me?", 0)
    mention = TriggerMatch("mention", "mention")
    conversation = Conversation()
    conversation.reserve(channel.key, first, settings)
    conversation.annotate(Outcome.of(channel, second, mention, Reason.RATE_LIMITED))
    share = conversation._talks[channel.key].share
    assert share.pending == 1
    conversation.annotate(Outcome.of(channel, first, mention, Reason.LLM_FAILED))
    assert share.pending == 0


def test_decay_curve_interpolates_between_points_and_is_flat_outside() -> None:
    config = ParticipationConfig()
    curve = config.decay  # 0.9@60, 0.7@120, 0.5@300, 0.2@900
    assert decay_factor(curve, 0) == 0.9
    assert decay_factor(curve, 60) == 0.9
    assert decay_factor(curve, 90) == pytest.approx(0.8)
    assert decay_factor(curve, 210) == pytest.approx(0.6)
    assert decay_factor(curve, 300) == pytest.approx(0.5)
    assert decay_factor(curve, 10_000) == 0.2
    assert decay_factor(curve, float("inf")) == 0.2


def test_joining_in_follows_the_curve_with_a_seeded_rng() -> None:
    """With a seeded RNG the joins are reproducible, and fewer the longer the bot was quiet."""
    config = ParticipationConfig(base_probability=0.5, max_per_window=10**6)
    rates = {}
    for seconds in (30, 120, 900):
        join = Participation(random.Random(7))
        replica = random.Random(7)
        chance = join.chance(config, since_engaged=seconds, text="nice", present=())
        decided = [join.roll(chance) for _ in range(2000)]
        assert decided == [replica.random() < chance for _ in range(2000)]
        rates[seconds] = sum(decided) / len(decided)
    assert rates[30] == pytest.approx(0.45, abs=0.03)
    assert rates[120] == pytest.approx(0.35, abs=0.03)
    assert rates[900] == pytest.approx(0.10, abs=0.03)


def test_questions_to_the_room_raise_the_chance_and_questions_to_someone_do_not() -> None:
    config = ParticipationConfig(base_probability=0.1, question_factor=3.0)
    join = Participation(random.Random(1))
    present = ["bob", "alice"]
    plain = join.chance(config, since_engaged=60, text="good film", present=present)
    room = join.chance(config, since_engaged=60, text="anyone seen this?", present=present)
    aimed = join.chance(config, since_engaged=60, text="bob: seen this?", present=present)
    at = join.chance(config, since_engaged=60, text="seen this @alice?", present=present)
    assert room == pytest.approx(3 * plain)
    assert aimed == at == plain
    assert is_room_question("what is this?", present)
    assert not is_room_question("what is this", present)


def test_the_join_cap_frees_after_the_window() -> None:
    config = ParticipationConfig(max_per_window=2, window_seconds=100)
    join = Participation()
    join.joined(0)
    join.joined(10)
    assert join.capped(config, 50)
    assert not join.capped(config, 100.5)


def test_decay_points_must_increase() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            None,
            participation={
                "decay": [{"after_seconds": 60, "factor": 0.9}, {"after_seconds": 60, "factor": 1}]
            },
        )
    assert "participation.decay" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "css", "how"),
    [
        pytest.param("the thing, obviously", "", "answer", id="answer-to-a-question"),
        pytest.param("> which film tonight", "greentext", "quote", id="greentext"),
        pytest.param("hmm which film tonight indeed", "", "quote", id="quoted-run"),
        pytest.param("@CynthiaRothbot ok", "", "at_name", id="at-account"),
    ],
)
def test_a_reply_to_the_bot_is_a_follow_up(text: str, css: str, how: str) -> None:
    followups = FollowUps()
    followups.answered("Alice", ("Which film tonight, alice?",), now=100)
    config = FollowUpConfig(enabled=True, window_seconds=60)
    kwargs = {"css_class": css, "bot_account": "CynthiaRothbot", "now": 130.0}
    assert followups.match(config, username="alice", text=text, **kwargs) == how
    # used once: the same line again is no follow-up
    assert followups.match(config, username="alice", text=text, **kwargs) is None


def test_no_follow_up_from_someone_else_after_the_window_or_without_a_reason() -> None:
    followups = FollowUps()
    config = FollowUpConfig(enabled=True, window_seconds=60)
    followups.answered("alice", ("Sure thing.",), now=100)
    kw = {"css_class": "", "bot_account": "CynthiaRothbot"}
    assert followups.match(config, username="bob", text="> sure", now=110, **kw) is None
    assert followups.match(config, username="alice", text="lol ok", now=110, **kw) is None
    assert followups.match(config, username="alice", text="> sure", now=161, **kw) is None


def test_titles_are_bounded_to_one_line() -> None:
    title = bounded_title("A\nvery\tlong " + "x" * 5000)
    assert len(title) == MAX_TITLE_CHARS
    assert title.startswith("A very long ")
    assert title.endswith("…")
    assert bounded_title("Short") == "Short"


def test_up_next_follows_the_playing_uid_and_bounds_titles() -> None:
    items = [
        {"media": {"id": "a", "title": "First"}, "uid": 1},
        {"media": {"id": "b", "title": "Second"}, "uid": 2},
        {"media": {"id": "c", "title": "Third «x» " + "y" * 900}, "uid": 3},
        {"media": {"id": "d", "title": "Fourth"}, "uid": 4},
    ]
    raw = json.dumps(items).encode()
    assert up_next(raw, uid=2, media_id="", count=1) == (bounded_title(items[2]["media"]["title"]),)
    assert len(up_next(raw, uid=2, media_id="", count=1)[0]) == MAX_TITLE_CHARS
    assert up_next(raw, uid=None, media_id="c", count=5) == ("Fourth",)
    assert up_next(raw, uid=4, media_id="", count=1) == ()
    assert up_next(raw, uid=9, media_id="", count=1) == ()
    assert up_next(b"{not json", uid=1, media_id="", count=1) == ()
    assert up_next(b'{"items": 1}', uid=1, media_id="", count=1) == ()


async def test_file_claims_hold_across_reopening_and_expire(tmp_path: Path) -> None:
    path = tmp_path / "state" / "seen.json"
    key = claim_key("cytu.be_MyChannel", "The  Thing")
    assert key == claim_key("cytu.be_MyChannel", "the thing")
    store = FileClaimStore.open(path)
    assert await store.claim(key, 1000.0, 60)
    assert not await store.claim(key, 1030.0, 60)
    reopened = FileClaimStore.open(path)
    assert await reopened.claimed_at(key) == 1000.0
    assert not await reopened.claim(key, 1059.0, 60)
    assert await reopened.claim(key, 1061.0, 60)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("{broken", id="not-json"),
        pytest.param("[1, 2]", id="not-an-object"),
        pytest.param('{"k": "soon"}', id="no-time"),
    ],
)
def test_a_broken_claims_file_is_an_error_naming_its_path(tmp_path: Path, content: str) -> None:
    path = tmp_path / "seen.json"
    path.write_text(content)
    with pytest.raises(StoreError) as caught:
        FileClaimStore.open(path)
    assert caught.value.path == path
    assert str(path) in str(caught.value)
