"""The reply validator and the spam guard, with an injected clock (no sleeping)."""

from __future__ import annotations

import pytest

from kryten_llm.config import PersonalityConfig, SpamConfig, ValidationConfig
from kryten_llm.pipeline.prompt import system_prompt
from kryten_llm.pipeline.spam import SpamGuard
from kryten_llm.pipeline.validator import ReplyValidator
from tests.conftest import Clock

SYSTEM = system_prompt(PersonalityConfig())


def validator(**kw: object) -> ReplyValidator:
    return ReplyValidator(ValidationConfig(**kw), SYSTEM)  # type: ignore[arg-type]


def test_a_reply_that_repeats_a_recent_one_is_refused() -> None:
    v = validator()
    first = "Plan 9 is the best worst movie ever made, and I will die on this hill."
    assert v.check(first, "c").ok
    v.remember(first, "c")
    verdict = v.check("Plan 9 is the best worst movie ever made and I will die on this hill!", "c")
    assert (verdict.ok, verdict.reason) == (False, "repetition")
    assert v.check(first, "another-channel").ok  # repetition is per channel
    assert v.check("Honestly the sequel had better effects than anyone admits.", "c").ok


def test_only_the_last_n_replies_count_as_repeats() -> None:
    v = validator(repetition_history=2)
    old = "Bela Lugosi appears for about two minutes of the whole film."
    v.remember(old, "c")
    v.remember("The flying saucers are paper plates on strings.", "c")
    v.remember("Ed Wood shot most scenes in a single take.", "c")
    assert v.check(old, "c").ok


def test_a_reply_quoting_the_system_prompt_is_a_leak() -> None:
    v = validator()
    attack = "Sure, my rules say: " + SYSTEM.split("\n")[4][:200]
    verdict = v.check(attack, "c")
    assert (verdict.ok, verdict.reason) == (False, "prompt_leak")
    # sharing a few common words is not a leak
    assert v.check("You are right, the chat is a strange place tonight.", "c").ok


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param("k", "too_short", id="too-short"),
        pytest.param("x" * 1001, "too_long", id="too-long"),
        pytest.param("Click here to FREE-CRYPTO now", "blocklisted", id="blocklist"),
    ],
)
def test_length_and_blocklist(text: str, reason: str) -> None:
    verdict = validator(blocklist=[r"free[- ]crypto"]).check(text, "c")
    assert (verdict.ok, verdict.reason) == (False, reason)


def test_nudge_names_the_reason() -> None:
    v = validator()
    verdict = v.check("k", "c")
    assert "(too short)" in v.nudge(verdict)


def guard(clock: Clock, **kw: object) -> SpamGuard:
    return SpamGuard(SpamConfig(**kw), clock=clock)  # type: ignore[arg-type]


def test_flooding_the_bot_earns_a_penalty_that_grows_and_then_expires(clock: Clock) -> None:
    g = guard(
        clock,
        max_messages=3,
        window_seconds=30,
        base_penalty_seconds=60,
        max_penalty_seconds=1000,
        max_identical=100,
    )
    for i in range(3):
        assert g.check("spammer", f"cynthia {i}", rank=0).allowed
    first = g.check("spammer", "cynthia 3", rank=0)
    assert (first.allowed, first.offence, first.strikes) == (False, "flood", 1)
    assert first.retry_after == pytest.approx(60)
    clock.now += 59
    assert not g.check("spammer", "cynthia again", rank=0).allowed  # still penalised... and
    clock.now += 120
    assert g.check("spammer", "cynthia calm now", rank=0).allowed
    for i in range(2):  # "calm now" counts too: the third burst line is the fourth in 30 s
        assert g.check("spammer", f"cynthia burst {i}", rank=0).allowed
    second = g.check("spammer", "cynthia burst 2", rank=0)
    assert (second.offence, second.strikes) == ("flood", 2)
    assert second.retry_after == pytest.approx(120)
    during = g.check("spammer", "cynthia more", rank=0)
    assert (during.allowed, during.strikes) == (False, 2)  # no new strike while penalised


def test_penalties_are_capped(clock: Clock) -> None:
    g = guard(
        clock,
        max_messages=1,
        window_seconds=10,
        base_penalty_seconds=60,
        max_penalty_seconds=200,
        forgive_after_seconds=1000,
        max_identical=100,
    )
    penalties = []
    for i in range(6):
        g.check("s", f"m{i}a", rank=0)
        penalties.append(g.check("s", f"m{i}b", rank=0).retry_after)
        clock.now += 500  # serve the penalty, stay within the forgiveness window
    assert penalties == pytest.approx([60, 120, 200, 200, 200, 200])


def test_strikes_are_forgiven_after_a_clean_spell(clock: Clock) -> None:
    g = guard(
        clock,
        max_messages=1,
        window_seconds=10,
        base_penalty_seconds=10,
        forgive_after_seconds=100,
        max_identical=100,
    )
    g.check("s", "a", rank=0)
    assert g.check("s", "b", rank=0).strikes == 1
    clock.now += 50
    g.check("s", "c0", rank=0)
    assert g.check("s", "c1", rank=0).strikes == 2
    clock.now += 200
    g.check("s", "c", rank=0)
    assert g.check("s", "d", rank=0).strikes == 1  # counted from zero again


def test_identical_messages_are_spam() -> None:
    g = guard(Clock(), max_identical=2)
    assert g.check("u", "Cynthia, tell me a joke!", rank=0).allowed
    verdict = g.check("u", "cynthia tell me a joke", rank=0)
    assert (verdict.allowed, verdict.offence) == (False, "identical")


def test_mention_flood_is_spam() -> None:
    present = {f"user{i}" for i in range(10)}
    g = guard(Clock(), max_mentioned_users=3)
    verdict = g.check("u", "cynthia: user1 user2 @user3 user4 user5", rank=0, present=present)
    assert (verdict.allowed, verdict.offence) == (False, "mention_flood")
    assert g.check("v", "cynthia and user1 and user2", rank=0, present=present).allowed


def test_moderators_are_exempt() -> None:
    g = guard(Clock(), max_messages=1)
    assert all(g.check("mod", f"m{i}", rank=2).allowed for i in range(20))
    assert len(g) == 0


def test_memory_is_bounded_by_idle_cleanup(clock: Clock) -> None:
    g = guard(
        clock,
        max_penalty_seconds=100,
        forgive_after_seconds=100,
        identical_window_seconds=100,
        window_seconds=10,
    )
    for i in range(50_000):
        clock.now += 0.01
        g.check(f"user{i}", "hello cynthia", rank=0)
    assert len(g) < 12_000  # only users seen in the last ~100 s (plus one cleanup period)
