"""Turn raw model output into chat messages CyTube will show, and never execute.

Sits between the LLM and the validator/sender. CyTube runs chat that starts with ``/`` as a
command (``/clear``, ``/kick``), cuts messages over its limit silently, and shows markdown as
literal asterisks, so a reply is cleaned, made safe and cut into parts here:

1. clean: ``<think>`` blocks, code fences, markdown, invented HTML tags; whitespace collapsed;
2. strip assistant boilerplate ("Sure! Here's…", "As an AI…") and self-references
   ("CynthiaRothbot: …") when ``strip_boilerplate`` is on; cap emoji at ``max_emojis``;
3. refuse a mass mention (more than ``max_mentions`` present users named): the whole reply is
   dropped, because trimming names out of a sentence leaves nonsense;
4. remove slash-like characters (``/``, full-width ``／``, ``⁄``, ``∕``… with any invisible
   format characters before them) wherever a chat message could start with them;
5. split into parts of at most ``max_message_length`` characters *including* the continuation
   marker, preferring sentence ends, then clause ends, then spaces; never inside a word, URL or
   grapheme cluster (only a single token longer than the limit is cut, between clusters);
6. keep at most ``max_parts`` parts, ending the last one at a sentence end when it has one.

The parts reassemble exactly into ``kept`` with their separators (see :func:`reassemble`).
What a character is (format characters, marks, grapheme clusters, emoji) is
:mod:`kryten_llm.pipeline.graphemes`; what a reply may contain is decided here.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kryten_llm.pipeline.graphemes import (
    CF,
    CF_CLASS,
    EXTENDING,
    cap_emoji,
    graphemes,
    trim_clusters,
)

if TYPE_CHECKING:
    from kryten_llm.config import FormattingConfig

# Characters that are, or normalise (NFKC) to, or look like a slash. A test checks that every
# code point whose NFKC form starts with "/" is listed.
SLASHES = "/\uff0f\u2044\u2215\u29f8\u2571\u27cb\u2f03\u3033"


_SLASH_CLASS = "[" + re.escape(SLASHES) + "]"
_THINK = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.IGNORECASE | re.DOTALL)
_THINK_OPEN = re.compile(r"<(?:think|thinking|reasoning)>.*", re.IGNORECASE | re.DOTALL)
_THINK_CLOSE = re.compile(r"^.*?</(?:think|thinking|reasoning)>", re.IGNORECASE | re.DOTALL)
_FENCE = re.compile(r"```.*?(?:```|$)", re.DOTALL)
_INLINE_CODE = re.compile(r"`([^`\n]*)`")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)\s]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^[ \t]*#{1,6}[ \t]+", re.MULTILINE)
_BULLET = re.compile(r"^[ \t]*(?:[-*+•]|\d{1,3}[.)])[ \t]+", re.MULTILINE)
_QUOTE = re.compile(r"^[ \t]*>[ \t]?(?=\S)", re.MULTILINE)
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1", re.DOTALL)
_ITALIC = re.compile(r"(?<![\w*])([*_])(?=\S)(.+?)(?<=\S)\1(?![\w*])", re.DOTALL)
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~", re.DOTALL)
_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9-]*(?:\s[^<>]*)?/?>")
_SPACE = re.compile(r"\s+")
_SPOTLIGHT = re.compile("[«»]")
_LONE_CF = re.compile(rf"(?<!\S){CF_CLASS}+(?!\S)")
# A slash (with invisible characters before it) where a message could start.
_LEADING_SLASH = re.compile(rf"(^|\s|[。！？])(?:{CF_CLASS}|{_SLASH_CLASS})*{_SLASH_CLASS}+")
_BOILERPLATE = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"^(?:sure|certainly|of course|absolutely|okay|ok)\s*[!.,]\s*"
        r"(?:here(?:'s| is| are)[^:.!?]{0,60}[:.!]\s*)?",
        r"^(?:great|good|excellent|interesting) question\s*[!.,]\s*",
        r"^here(?:'s| is) (?:my|a|the) (?:reply|response|answer)[^:.!?]{0,40}[:.!]\s*",
        r"^as (?:an ai|a large language model|an ai language model|a language model)"
        r"[^,.!?]{0,80}[,.!]\s*(?:but\s+)?",
        r"^i(?:'m| am) (?:just |only )?(?:an ai|a language model|a bot)[^,.!?]{0,80}[,.!]\s*"
        r"(?:but\s+)?",
    )
]
SENTENCE_END = ".!?…。！？"
CJK_END = "。！？"
_CLAUSE_END = ",;:—–"
_WORD = re.compile(r"@?([\w-]+)")


@dataclass(frozen=True, slots=True)
class FormattedReply:
    """A reply ready to send.

    Attributes:
        parts: chat messages in order; empty when there is nothing to send.
        kept: the cleaned text the parts were cut from (after truncation).
        truncated: text was dropped to respect ``max_parts``.
        removed: labels of what cleaning removed ("think", "markdown", "boilerplate", ...).
        separators: what joins part ``i`` to part ``i + 1`` in ``kept`` (" " or "").
        marker: the continuation marker appended to every part but the last.
    """

    parts: tuple[str, ...]
    kept: str
    truncated: bool = False
    removed: tuple[str, ...] = ()
    separators: tuple[str, ...] = ()
    marker: str = ""


def reassemble(reply: FormattedReply) -> str:
    """``kept`` rebuilt from the parts: markers removed, separators put back."""
    out = []
    for i, part in enumerate(reply.parts):
        last = i == len(reply.parts) - 1
        out.append(part if last or not reply.marker else part.removesuffix(reply.marker))
        if not last:
            out.append(reply.separators[i])
    return "".join(out)


def format_reply(
    text: str,
    config: FormattingConfig,
    *,
    bot_names: Sequence[str] = (),
    present_users: Collection[str] = (),
) -> FormattedReply:
    """Clean ``text`` and cut it into CyTube chat messages.

    Args:
        text: the model's raw output.
        config: the formatting slice of the settings.
        bot_names: the bot's names, for removing self-references.
        present_users: names of users in the channel, for mass-mention detection.

    Returns:
        The parts to send (possibly none) and what was removed on the way.
    """
    kept, removed = clean_text(text, config, bot_names=bot_names)
    if (
        kept
        and present_users
        and count_mentions(kept, present_users, bot_names) > config.max_mentions
    ):
        return FormattedReply((), "", False, (*removed, "mass_mention"))
    if not kept:
        return FormattedReply((), "", False, removed)
    parts, separators, truncated = cut_parts(kept, config, config.max_parts)
    marker = config.continuation_marker
    reply = FormattedReply(parts, "", truncated, removed, separators, marker)
    return FormattedReply(parts, reassemble(reply), truncated, removed, separators, marker)


def cut_parts(
    kept: str, config: FormattingConfig, max_parts: int
) -> tuple[tuple[str, ...], tuple[str, ...], bool]:
    """Cut cleaned text into at most ``max_parts`` chat messages (steps 5 and 6 above).

    Args:
        kept: text already cleaned by :func:`clean_text`.
        config: the formatting slice (length limit, continuation marker).
        max_parts: how many parts may be used.

    Returns:
        The parts (markers added), the separators between them, and whether text was dropped.
    """
    marker = config.continuation_marker
    parts, separators = _split(kept, config.max_message_length, marker)
    truncated = False
    if len(parts) > max_parts:
        truncated = True
        parts, separators = parts[:max_parts], separators[: max_parts - 1]
        parts[-1] = end_at_sentence(parts[-1])
    if parts and marker:
        parts = [p + marker for p in parts[:-1]] + [parts[-1]]
    return tuple(parts), tuple(separators), truncated


def clean_text(
    text: str, config: FormattingConfig, *, bot_names: Sequence[str] = ()
) -> tuple[str, tuple[str, ...]]:
    """The reply with everything unsendable removed, on one line; and labels of what went."""
    removed: list[str] = []

    def sub(pattern: re.Pattern[str], repl: str, label: str, value: str) -> str:
        new = pattern.sub(repl, value)
        if new != value and label not in removed:
            removed.append(label)
        return new

    text = sub(_THINK, " ", "think", text)
    text = sub(_THINK_OPEN, " ", "think", text)
    text = sub(_THINK_CLOSE, " ", "think", text)
    text = sub(_FENCE, " ", "code", text)
    if config.strip_boilerplate and bot_names:
        text = sub(_self_reference(tuple(bot_names)), "", "self_reference", text.lstrip())
    text = sub(_INLINE_CODE, r"\1", "markdown", text)
    text = sub(_IMAGE, r"\1", "markdown", text)
    text = sub(_LINK, r"\1 (\2)", "markdown", text)
    text = sub(_HEADING, "", "markdown", text)
    text = sub(_BULLET, "", "markdown", text)
    text = sub(_QUOTE, "", "markdown", text)
    text = sub(_BOLD, r"\2", "markdown", text)
    text = sub(_STRIKE, r"\1", "markdown", text)
    text = sub(_ITALIC, r"\2", "markdown", text)
    text = sub(_TAG, " ", "html", text)
    # The prompt's quote markers around chat text are ours; a reply never needs them.
    text = sub(_SPOTLIGHT, "", "quote_markers", text)
    text = _LONE_CF.sub(" ", _SPACE.sub(" ", text))
    text = _SPACE.sub(" ", text).strip()
    if config.strip_boilerplate:
        for _ in range(3):
            before = text
            for pattern in _BOILERPLATE:
                text = sub(pattern, "", "boilerplate", text).lstrip()
            if bot_names:
                text = sub(_self_reference(tuple(bot_names)), "", "self_reference", text)
            if text == before:
                break
    if config.max_emojis is not None:
        capped = cap_emoji(text, config.max_emojis)
        if capped != text:
            removed.append("emoji")
            text = _SPACE.sub(" ", capped).strip()
    # Each of these can expose work for the others (a slash behind an orphan mark, an orphan
    # mark behind a slash): repeat until nothing changes.
    for _ in range(4):
        before = text
        if not text.isascii() and EXTENDING.search(text):
            trimmed = trim_clusters(text)
            if trimmed != text and "zalgo" not in removed:
                removed.append("zalgo")
            text = trimmed
        safe = _LEADING_SLASH.sub(r"\1", text)
        if safe != text and "leading_slash" not in removed:
            removed.append("leading_slash")
        # Invisible characters alone at the very start or end are noise, never content.
        text = _SPACE.sub(" ", safe).strip(CF + " ")
        if text == before:
            break
    return text, tuple(removed)


@functools.lru_cache(maxsize=32)
def _self_reference(names: tuple[str, ...]) -> re.Pattern[str]:
    alternation = "|".join(re.escape(n) for n in sorted(set(names), key=len, reverse=True) if n)
    return re.compile(
        rf"^\*?(?:as\s+)?(?:{alternation})(?:\s+(?:says|here|replies|\(you\)))?\*?\s*"
        r"(?::|,|—|\s-)\s*",
        re.IGNORECASE,
    )


def count_mentions(text: str, present: Collection[str], bot_names: Sequence[str]) -> int:
    """How many of the ``present`` users (the bot's own names aside) ``text`` names."""
    users = {u.lower() for u in present} - {n.lower() for n in bot_names}
    return len({w.lower() for w in _WORD.findall(text)} & users)


def _split(text: str, limit: int, marker: str) -> tuple[list[str], list[str]]:
    """Cut ``text`` into parts; returns the parts and the separators between them."""
    parts: list[str] = []
    separators: list[str] = []
    budget = max(limit - len(marker), 1)
    while len(text) > limit:
        cut, sep = best_cut(text, budget)
        parts.append(text[:cut])
        separators.append(sep)
        text = text[cut + len(sep) :]
    parts.append(text)
    return parts, separators


def best_cut(text: str, budget: int) -> tuple[int, str]:
    """Where to end a part of at most ``budget`` characters, and the separator consumed.

    Only ``text[:budget + 1]`` is looked at, so a cut is final once that much text is in
    (what lets a streamed reply send full parts before it is finished).
    """
    window = text[: budget + 1]
    floor = budget // 2
    best: dict[str, int] = {}
    for i in range(len(window) - 1, 0, -1):
        c = window[i]
        prev = window[i - 1]
        if c == " " and i <= budget:
            kind = (
                "sentence" if prev in SENTENCE_END else "clause" if prev in _CLAUSE_END else "space"
            )
            best.setdefault(kind, i)
        elif prev in CJK_END and i <= budget:
            best.setdefault("cjk", i)
        if "sentence" in best and best["sentence"] >= floor:
            break
    for kind in ("sentence", "cjk", "clause", "space"):
        if kind in best and (best[kind] >= floor or kind == "space"):
            return best[kind], "" if kind == "cjk" else " "
    for kind in ("sentence", "cjk", "clause"):
        if kind in best:
            return best[kind], "" if kind == "cjk" else " "
    return _hard_cut(text, budget), ""


def _hard_cut(text: str, budget: int) -> int:
    """A cut inside an over-long token: the last cluster boundary within the budget after
    which the next part does not start with a slash or an invisible character."""
    boundaries = []
    for _, end in graphemes(text):
        if end > budget:
            break
        boundaries.append(end)
    for cut in reversed(boundaries):
        if cut < len(text) and text[cut] not in SLASHES and text[cut] not in CF:
            return cut
    return boundaries[-1] if boundaries else min(budget, len(text))


def end_at_sentence(part: str) -> str:
    """``part`` cut after its last sentence end, when it has one past its first word."""
    for i in range(len(part) - 1, 0, -1):
        if part[i] in SENTENCE_END and (i + 1 == len(part) or part[i + 1] == " "):
            return part[: i + 1]
    return part
