"""Triggers (word boundaries, priority, seeded probability) and every rate limit kind."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kryten_llm.config import PersonalityConfig, RateLimitConfig, TriggersConfig
from kryten_llm.pipeline.decisions import TriggerMatch
from kryten_llm.pipeline.ratelimit import InMemoryRateLimitStore, RateLimiter
from kryten_llm.pipeline.triggers import TriggerEngine
from tests.conftest import OPEN_LIMITS, Clock

TODD = PersonalityConfig(character_name="Todd", name_variations=["toddbot", "r2-d2"])


def engine(
    words: list[dict[str, object]] | None = None, seed: int = 7, **kw: object
) -> TriggerEngine:
    config = TriggersConfig(words=words or [], **kw)  # type: ignore[arg-type]
    return TriggerEngine(config, TODD, rng=random.Random(seed))


@pytest.mark.parametrize(
    ("text", "fires"),
    [
        pytest.param("hey todd", True, id="plain"),
        pytest.param("TODD?", True, id="upper-with-punctuation"),
        pytest.param("@todd look", True, id="at-mention"),
        pytest.param("todd, hi", True, id="comma"),
        pytest.param("what about r2-d2!", True, id="variation-with-hyphen"),
        pytest.param("toddbot", True, id="variation"),
        pytest.param("the toddler cried", False, id="prefix-of-word"),
        pytest.param("mctodd was here", False, id="suffix-of-word"),
        pytest.param("tödd", False, id="accented-lookalike"),
        pytest.param("todd_2", False, id="underscore-joins-words"),
        pytest.param("ötodd", False, id="unicode-letter-before"),
    ],
)
def test_mentions_match_on_word_boundaries(text: str, fires: bool) -> None:
    e = engine()
    assert e.is_mention(text) is fires
    assert (e.match(text) is not None) is fires


def test_a_word_trigger_fires_with_its_context() -> None:
    e = engine([{"name": "snack", "patterns": ["popcorn", "nachos"], "context": "joke"}])
    assert e.match("more popcorn please") == TriggerMatch("word", "snack", 0, "joke")
    assert e.match("popcorns") is None


def test_regex_triggers() -> None:
    e = engine([{"name": "year", "patterns": [r"\b19[5-7]\d\b"], "regex": True}])
    assert e.match("made in 1957?") is not None
    assert e.match("made in 1987?") is None


def test_mention_beats_a_lower_priority_word_and_loses_to_a_higher_one() -> None:
    low = engine([{"name": "low", "patterns": ["film"], "priority": 5}], mention_priority=10)
    assert low.match("todd, film?").kind == "mention"  # type: ignore[union-attr]
    high = engine([{"name": "high", "patterns": ["film"], "priority": 50}], mention_priority=10)
    assert high.match("todd, film?").name == "high"  # type: ignore[union-attr]


def test_probability_is_reproducible_with_a_seed_and_close_to_its_rate() -> None:
    words = [{"name": "p", "patterns": ["popcorn"], "probability": 0.3}]
    a, b = engine(words, seed=42), engine(words, seed=42)
    runs_a = [a.match("popcorn") is not None for _ in range(10_000)]
    runs_b = [b.match("popcorn") is not None for _ in range(10_000)]
    assert runs_a == runs_b
    assert 2700 < sum(runs_a) < 3300


@pytest.mark.parametrize(("probability", "expected"), [(0.0, 0), (1.0, 200)])
def test_probability_zero_never_and_one_always(probability: float, expected: int) -> None:
    e = engine([{"name": "p", "patterns": ["popcorn"], "probability": probability}])
    assert sum(e.match("popcorn!") is not None for _ in range(200)) == expected


def test_a_missed_roll_falls_through_to_the_next_candidate() -> None:
    words = [
        {"name": "rare", "patterns": ["film"], "probability": 0.0, "priority": 9},
        {"name": "sure", "patterns": ["film"], "probability": 1.0, "priority": 1},
    ]
    assert engine(words).match("film").name == "sure"  # type: ignore[union-attr]


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_match_never_raises(text: str) -> None:
    e = engine([{"name": "w", "patterns": ["popcorn", "a.b"]}])
    e.match(text)


# Line pieces: the names and words in any case, word joiners, and letters that re.IGNORECASE
# matches to ASCII ones (long s, Kelvin sign, dotted capital I).
_PIECES = st.sampled_from(
    [
        *("todd", "TODD", "ToddBot", "r2-d2", "R2-D2", "@", "_", "x", " ", "!", "popcorn"),
        *("PopCorn", "a.b", "aXb", "ky", "s", "\u017f", "\u212a", "\u0130", "t\u00f6dd", "1"),
    ]
)


@pytest.mark.parametrize(
    "words",
    [
        pytest.param([], id="names-only"),
        pytest.param([{"name": "w", "patterns": ["popcorn", "a.b"]}], id="words"),
        pytest.param([{"name": "k", "patterns": ["sKy"]}], id="ascii-word-unicode-line"),
        pytest.param([{"name": "k", "patterns": ["\u017fky"]}], id="non-ascii-word"),
        pytest.param([{"name": "r", "patterns": ["a.b"], "regex": True}], id="regex"),
    ],
)
@given(pieces=st.lists(_PIECES, max_size=12))
@example(pieces=["s", "ky"]).via("an ASCII line, a word that folds to it")
@example(pieces=["\u017f", "ky", "!"]).via("a line that folds to an ASCII word")
@settings(max_examples=300, deadline=None)
def test_the_literal_precheck_never_changes_a_match(
    words: list[dict[str, object]], pieces: list[str]
) -> None:
    """Whatever the line: a trigger fires exactly when the full regex finds one."""
    e = engine(words)
    text = "".join(pieces)
    assert (e.match(text) is not None) is (e._any is not None and e._any.search(text) is not None)


def test_the_literal_precheck_is_used_only_for_plain_ascii_words() -> None:
    assert engine()._literals == ("r2-d2", "todd")  # "toddbot" contains "todd"
    assert engine([{"name": "w", "patterns": ["PopCorn"]}])._literals == (
        "popcorn",
        "r2-d2",
        "todd",
    )
    assert engine([{"name": "r", "patterns": ["a.b"], "regex": True}])._literals is None
    assert engine([{"name": "k", "patterns": ["\u017fky"]}])._literals is None


MENTION = TriggerMatch("mention", "mention", 100)
WORD = TriggerMatch("word", "snack", 0)
OPEN = {**OPEN_LIMITS, "rank_multipliers": []}


def limiter(
    clock: Clock, words: list[dict[str, object]] | None = None, **kw: object
) -> RateLimiter:
    return RateLimiter(
        RateLimitConfig(**(OPEN | kw)),  # type: ignore[arg-type]
        TriggersConfig(words=words or []),  # type: ignore[arg-type]
        clock=clock,
    )


CASES = [
    pytest.param(
        {"global_cooldown_seconds": 5},
        MENTION,
        ["a", "b"],
        "global_cooldown",
        5.0,
        id="global-cooldown",
    ),
    pytest.param(
        {"global_per_minute": 2},
        MENTION,
        ["a", "b", "c"],
        "global_per_minute",
        60.0,
        id="global-per-minute",
    ),
    pytest.param(
        {"global_per_hour": 2},
        MENTION,
        ["a", "b", "c"],
        "global_per_hour",
        3600.0,
        id="global-per-hour",
    ),
    pytest.param(
        {"user_cooldown_seconds": 30},
        MENTION,
        ["a", "A"],
        "user_cooldown",
        30.0,
        id="user-cooldown-any-case",
    ),
    pytest.param(
        {"user_per_hour": 2}, MENTION, ["a", "a", "a"], "user_per_hour", 3600.0, id="user-per-hour"
    ),
    pytest.param(
        {"mention_cooldown_seconds": 45},
        MENTION,
        ["a", "a"],
        "mention_cooldown",
        45.0,
        id="mention-cooldown",
    ),
]


@pytest.mark.parametrize(("limits", "trigger", "users", "limit", "wait"), CASES)
async def test_each_limit_blocks_then_releases_exactly_at_retry_after(
    limits: dict[str, float], trigger: TriggerMatch, users: list[str], limit: str, wait: float
) -> None:
    clock = Clock()
    rl = limiter(clock, **limits)
    for user in users[:-1]:
        assert (await rl.acquire(username=user, rank=0, trigger=trigger)).allowed
    refused = await rl.acquire(username=users[-1], rank=0, trigger=trigger)
    assert (refused.allowed, refused.limit) == (False, limit)
    assert refused.retry_after == pytest.approx(wait)
    clock.now += refused.retry_after - 0.001
    assert not (await rl.check(username=users[-1], rank=0, trigger=trigger)).allowed
    clock.now += 0.001
    assert (await rl.acquire(username=users[-1], rank=0, trigger=trigger)).allowed


async def test_trigger_word_cooldown_and_hourly_cap() -> None:
    clock = Clock()
    rl = limiter(
        clock, [{"name": "snack", "patterns": ["x"], "cooldown_seconds": 10, "max_per_hour": 2}]
    )
    assert (await rl.acquire(username="a", rank=0, trigger=WORD)).allowed
    refused = await rl.acquire(username="b", rank=0, trigger=WORD)
    assert (refused.limit, refused.retry_after) == ("trigger_cooldown", pytest.approx(10))
    clock.now += 10
    assert (await rl.acquire(username="b", rank=0, trigger=WORD)).allowed
    clock.now += 10
    capped = await rl.acquire(username="c", rank=0, trigger=WORD)
    assert (capped.limit, capped.retry_after) == ("trigger_per_hour", pytest.approx(3580))
    # a mention is not subject to the word's limits
    assert (await rl.acquire(username="c", rank=0, trigger=MENTION)).allowed


async def test_unsolicited_replies_are_capped_across_all_trigger_words() -> None:
    clock = Clock()
    words = [{"name": "snack", "patterns": ["x"]}, {"name": "film", "patterns": ["y"]}]
    rl = limiter(clock, words, unsolicited_per_window=2, unsolicited_window_seconds=100)
    film = TriggerMatch("word", "film", 0)
    assert (await rl.acquire(username="a", rank=0, trigger=WORD)).allowed
    assert (await rl.acquire(username="b", rank=0, trigger=film)).allowed
    refused = await rl.acquire(username="c", rank=0, trigger=WORD)
    assert (refused.limit, refused.retry_after) == ("unsolicited", pytest.approx(100))
    assert (await rl.acquire(username="c", rank=0, trigger=MENTION)).allowed  # asked for
    clock.now += 100
    assert (await rl.acquire(username="c", rank=0, trigger=film)).allowed


async def test_a_zero_hourly_cap_never_allows() -> None:
    rl = limiter(Clock(), [{"name": "snack", "patterns": ["x"], "max_per_hour": 0}])
    assert (await rl.acquire(username="a", rank=0, trigger=WORD)).limit == "trigger_per_hour"


async def test_moderators_get_more_replies_and_shorter_cooldowns() -> None:
    clock = Clock()
    rl = limiter(
        clock,
        user_per_hour=2,
        user_cooldown_seconds=20,
        rank_multipliers=[
            {"min_rank": 2, "limit_multiplier": 2.0, "cooldown_multiplier": 0.5},
            {"min_rank": 3, "limit_multiplier": 4.0, "cooldown_multiplier": 0.25},
        ],
    )
    for _ in range(4):
        assert (await rl.acquire(username="mod", rank=2, trigger=MENTION)).allowed
        clock.now += 10  # half of the 20 s cooldown
    assert (await rl.acquire(username="mod", rank=2, trigger=MENTION)).limit == "user_per_hour"
    assert (await rl.acquire(username="leader", rank=1.5, trigger=MENTION)).allowed
    clock.now += 10
    refused = await rl.acquire(username="leader", rank=1.5, trigger=MENTION)
    assert (refused.limit, refused.retry_after) == ("user_cooldown", pytest.approx(10))


async def test_concurrent_acquires_never_exceed_the_limit() -> None:
    rl = limiter(Clock(), global_per_minute=7)
    results = await asyncio.gather(
        *(rl.acquire(username=f"u{i}", rank=0, trigger=MENTION) for i in range(50))
    )
    assert sum(r.allowed for r in results) == 7


async def test_check_does_not_record_and_clear_resets() -> None:
    rl = limiter(Clock(), global_per_minute=1)
    for _ in range(3):
        assert (await rl.check(username="a", rank=0, trigger=MENTION)).allowed
    assert (await rl.acquire(username="a", rank=0, trigger=MENTION)).allowed
    assert not (await rl.acquire(username="a", rank=0, trigger=MENTION)).allowed
    await rl.clear()
    assert (await rl.acquire(username="a", rank=0, trigger=MENTION)).allowed


async def test_memory_stays_bounded_with_many_users() -> None:
    clock = Clock()
    store = InMemoryRateLimitStore(sweep_above=1000)
    rl = RateLimiter(RateLimitConfig(**OPEN), TriggersConfig(), store=store, clock=clock)  # type: ignore[arg-type]
    for i in range(100_000):
        clock.now += 0.072  # 100,000 users over two hours
        await rl.acquire(username=f"user{i}", rank=0, trigger=MENTION)
    # keys of users idle for more than an hour are swept: about an hour's worth remain
    assert len(store) < 2 * (3600 / 0.072) + 1000
