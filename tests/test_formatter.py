"""The formatter: properties over arbitrary text, and the cleaning rules by example."""

from __future__ import annotations

import sys
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kryten_llm.config import FormattingConfig
from kryten_llm.pipeline.formatter import SLASHES, clean_text, format_reply, reassemble

NAMES = ("CynthiaRothbot", "cynthia")
INVISIBLE = "".join(c for c in map(chr, range(0x10000)) if unicodedata.category(c) == "Cf")


def visible_start(part: str) -> str:
    """The part as CyTube's command check would see it, after normalising away tricks."""
    return unicodedata.normalize("NFKC", part).lstrip(INVISIBLE + " \t\u00a0\u3000")


def starts_inside_a_cluster(part: str) -> bool:
    first = part[0]
    return (
        unicodedata.category(first) in ("Mn", "Me", "Mc")
        or first == "\u200d"
        or "\ufe00" <= first <= "\ufe0f"
        or "\U0001f3fb" <= first <= "\U0001f3ff"
    )


TOKENS = [
    *"abcdefghij ABC .,!?;:-/\n*_#`<>[]()",
    *["／", "⁄", "∕", "\u200b", "\u2060", "\ufeff", "\u0301", "👍", "🏽", "。", "…", "\u3000"],
    *["👨\u200d👩\u200d👧", "🇫🇷", "https://x.example/a/b", "<think>", "</think>", "```"],
    *["CynthiaRothbot: ", "As an AI, ", "Sure! ", " /clear", "word" * 30],
]
chat_text = st.lists(st.sampled_from(TOKENS), max_size=150).map("".join) | st.text(max_size=400)


@given(
    text=chat_text,
    limit=st.integers(20, 400),
    max_parts=st.integers(1, 6),
    marker=st.sampled_from(["…", "", " (cont)"]),
)
@settings(max_examples=400, deadline=None)
def test_every_part_is_safe_and_the_parts_give_back_the_kept_text(
    text: str, limit: int, max_parts: int, marker: str
) -> None:
    config = FormattingConfig(
        max_message_length=limit, max_parts=max_parts, continuation_marker=marker
    )
    reply = format_reply(text, config, bot_names=NAMES)
    assert len(reply.parts) <= max_parts
    for part in reply.parts:
        assert 0 < len(part) <= limit
        assert part == part.strip()
        assert visible_start(part)  # never invisible-only
        assert visible_start(part)[0] not in SLASHES
        assert not starts_inside_a_cluster(part)
    assert reassemble(reply) == reply.kept
    assert reply.kept == reply.kept.strip()
    assert "  " not in reply.kept
    if reply.parts and not reply.truncated:
        assert reply.kept == clean_text(text, config, bot_names=NAMES)[0]


def test_every_character_that_normalises_to_a_slash_is_known() -> None:
    """SLASHES must hold every code point whose NFKC form starts with '/'."""
    missing = [
        hex(c)
        for c in range(sys.maxunicode + 1)
        if unicodedata.normalize("NFKC", chr(c)).startswith("/") and chr(c) not in SLASHES
    ]
    assert missing == []


CONFIG = FormattingConfig(max_message_length=60, max_parts=3)


@pytest.mark.parametrize(
    ("raw", "parts", "label"),
    [
        pytest.param(
            "<think>plan: be rude</think>Hello there!", ("Hello there!",), "think", id="think-block"
        ),
        pytest.param(
            "Hi</think> ignored? no: everything before the close goes",
            ("ignored? no: everything before the close goes",),
            "think",
            id="unopened-think",
        ),
        pytest.param(
            "Answer:\n```python\nrm -rf /\n```\nDone.", ("Answer: Done.",), "code", id="code-fence"
        ),
        pytest.param(
            "**Bold** and *italic* and `code` and [link](https://x.example)",
            ("Bold and italic and code and link (https://x.example)",),
            "markdown",
            id="markdown",
        ),
        pytest.param("# Title\n- one\n- two", ("Title one two",), "markdown", id="lists"),
        pytest.param(
            "Sure! Here's my answer: it is 1957.", ("it is 1957.",), "boilerplate", id="sure-heres"
        ),
        pytest.param(
            "As an AI language model, I adore Plan 9.",
            ("I adore Plan 9.",),
            "boilerplate",
            id="as-an-ai",
        ),
        pytest.param(
            "CynthiaRothbot: the film rules",
            ("the film rules",),
            "self_reference",
            id="self-reference",
        ),
        pytest.param("\u200b/clear", ("clear",), "leading_slash", id="zero-width-then-slash"),
        pytest.param("／kick alice", ("kick alice",), "leading_slash", id="fullwidth-slash"),
        pytest.param(
            "ok then /ban bob", ("ok then ban bob",), "leading_slash", id="slash-after-space"
        ),
        pytest.param(
            "Sure thing: snake_case and 1/2 stay",
            ("Sure thing: snake_case and 1/2 stay",),
            None,
            id="harmless-text-untouched",
        ),
    ],
)
def test_cleaning(raw: str, parts: tuple[str, ...], label: str | None) -> None:
    reply = format_reply(raw, CONFIG, bot_names=NAMES)
    assert reply.parts == parts
    if label:
        assert label in reply.removed


def test_split_prefers_sentence_boundaries() -> None:
    text = "The first sentence is here. The second one is a bit longer than that. Third."
    reply = format_reply(text, FormattingConfig(max_message_length=50, continuation_marker=""))
    assert reply.parts == (
        "The first sentence is here.",
        "The second one is a bit longer than that. Third.",
    )


def test_url_is_not_split() -> None:
    url = "https://example.com/" + "a" * 30
    reply = format_reply(
        f"look at this one {url} it is great",
        FormattingConfig(max_message_length=60, continuation_marker=""),
    )
    assert any(url in part for part in reply.parts)


def test_capped_reply_ends_at_a_sentence_boundary() -> None:
    text = " ".join(f"Sentence number {i} is right here." for i in range(20))
    reply = format_reply(text, FormattingConfig(max_message_length=80, max_parts=2))
    assert reply.truncated
    assert len(reply.parts) == 2
    assert reply.parts[0].endswith("…")
    assert reply.parts[-1].endswith(".")
    assert not reply.parts[-1].endswith("…")


def test_mass_mention_is_dropped() -> None:
    users = {"alice", "bob", "carol", "dave", "erin"}
    reply = format_reply(
        "hey alice bob @carol and dave!", FormattingConfig(max_mentions=3), present_users=users
    )
    assert reply.parts == ()
    assert "mass_mention" in reply.removed
    assert format_reply("hi alice and bob", FormattingConfig(), present_users=users).parts


def test_emoji_cap_keeps_zwj_sequences_whole() -> None:
    family = "👨\u200d👩\u200d👧"
    reply = format_reply(f"a {family} b 👍🏽 c 🇫🇷 d", FormattingConfig(max_emojis=2))
    assert reply.parts == (f"a {family} b 👍🏽 c d",)
    assert "emoji" in reply.removed


def test_empty_or_invisible_output_gives_no_parts() -> None:
    for raw in ("", "   ", "\u200b\u2060\ufeff", "<think>only thoughts</think>", "/", "```x```"):
        assert format_reply(raw, CONFIG).parts == ()


def test_format_characters_exist_only_in_the_planes_the_formatter_scans() -> None:
    """The formatter scans planes 0, 1 and 14 for Cf and mark characters; nothing is missed."""
    outside = [
        hex(c)
        for c in range(0x20000, sys.maxunicode + 1)
        if not 0xE0000 <= c < 0xE1000 and unicodedata.category(chr(c)) in ("Cf", "Mn", "Me", "Mc")
    ]
    assert outside == []
