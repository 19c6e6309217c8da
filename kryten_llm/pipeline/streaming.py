"""Cut a reply into chat messages while the model is still writing it.

Sits where :func:`~kryten_llm.pipeline.formatter.format_reply` sits, for streamed answers: the
reply path hands :meth:`PartCutter.ready` the answer so far after every chunk and sends the
parts it returns; when the answer is complete, :meth:`PartCutter.rest` returns the parts left.
Every part is cut from :func:`~kryten_llm.pipeline.formatter.clean_text` of the text so far,
so it has had every cleaning the whole reply gets (markdown, ``<think>``, boilerplate, slashes,
emoji cap), and the cutting rules are the formatter's.

When a part is ready:

- the first one as soon as its first sentence is finished (a sentence end followed by a
  space), with every finished sentence that fits in one part, and without a continuation
  marker (the answer may end there); a first sentence longer than a part goes out once a full
  part of it is in;
- the next ones when a full part is in (the formatter's cut depends only on the first
  ``max_message_length`` characters, so it is final then), the last allowed one ended at a
  sentence end, and the rest of the answer is not needed: :attr:`PartCutter.done`;
- never while the text it would send still holds markup that later text could close (``*``,
  backquote, ``[``, ``<``, ``~``, a ``_`` starting a word): cleaning might still remove it;
- never when the parts would name more present users than ``max_mentions`` in total (before
  the first part: the whole reply is then dropped as a mass mention at the end, as unstreamed).

Cleaning the whole answer must give the text already sent, then more. A model that writes its
reasoning and then a bare ``</think>`` breaks that (everything before the tag is removed
afterwards): :attr:`PartCutter.unstable` says so and nothing more is sent; give such a model
``stream: false``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from kryten_llm.pipeline.formatter import (
    CJK_END,
    SENTENCE_END,
    best_cut,
    clean_text,
    count_mentions,
    cut_parts,
    end_at_sentence,
)

if TYPE_CHECKING:
    from kryten_llm.config import FormattingConfig

# Markup that a later character could still close, so that cleaning would change the text.
_UNSETTLED = re.compile(r"[*`\[<~]|(?<!\w)_(?=\S)")


class PartCutter:
    """The parts of one streamed reply, handed out once each, in order.

    Args:
        config: the formatting slice.
        bot_names: the bot's names (self-references are removed; they are not mentions).
        present_users: who is in the channel, for the mass-mention check.
    """

    def __init__(
        self,
        config: FormattingConfig,
        *,
        bot_names: Sequence[str] = (),
        present_users: Collection[str] = (),
    ) -> None:
        self._config = config
        self._names = bot_names
        self._present = present_users
        self._covered = ""  # the cleaned text the parts handed out cover, markers left out
        self._tried = 0  # how much of the raw answer the last cutting attempt saw
        self.parts: list[str] = []
        self.removed: tuple[str, ...] = ()
        self.done = False  # the last allowed part went out (or nothing more may)
        self.truncated = False
        self.unstable = False
        self.mass_mention = False

    def ready(self, text: str) -> list[str]:
        """The parts of the unfinished answer ``text`` that can be sent now (see the module).

        The answer so far is cleaned and cut again only when something new could be cut: a
        sentence end arrived (with the character before the new text, so a space that follows
        a full stop counts) or :data:`RECUT_CHARS` more characters did. Cleaning the whole
        answer on every token would make a long answer cost quadratic time.
        """
        fresh = text[max(self._tried - 1, 0) :]
        if len(text) - self._tried < RECUT_CHARS and not _ENDS.intersection(fresh):
            return []
        self._tried = len(text)
        rest = self._rest(text)
        finished = text[-1:].isspace()  # cleaning strips it; it ends the last sentence
        out: list[str] = []
        while rest is not None and not self.done:
            cut = self._next(rest, finished)
            if cut is None:
                break
            part, consumed = cut
            out.append(part)
            rest = rest[consumed:].lstrip(" ")
        return out

    def rest(self, text: str) -> list[str]:
        """The parts left once the answer ``text`` is complete."""
        rest = self._rest(text)
        if not rest or self.done:
            return []
        left = self._config.max_parts - len(self.parts)
        parts, _, truncated = cut_parts(rest, self._config, left)
        marker = self._config.continuation_marker
        whole = self._join(" ".join(p.removesuffix(marker) if marker else p for p in parts))
        if self._present and count_mentions(whole, self._present, self._names) > self._limit:
            self.mass_mention = self.done = True
            return []
        self.truncated = truncated
        self.done = True
        self.parts.extend(parts)
        self._covered = whole
        return list(parts)

    @property
    def _limit(self) -> int:
        return self._config.max_mentions

    def _rest(self, text: str) -> str | None:
        """What the parts handed out do not cover yet; None when nothing more may go out."""
        if self.done:
            return None
        kept, removed = clean_text(text, self._config, bot_names=self._names)
        self.removed = tuple(dict.fromkeys((*self.removed, *removed)))
        if not kept.startswith(self._covered):
            self.unstable = self.done = True
            return None
        return kept[len(self._covered) :].lstrip(" ")

    def _join(self, body: str) -> str:
        return f"{self._covered} {body}" if self._covered else body

    def _next(self, rest: str, finished: bool) -> tuple[str, int] | None:
        """The next part of ``rest`` if one is ready, and how much of ``rest`` it consumes."""
        cfg = self._config
        marker = cfg.continuation_marker
        budget = max(cfg.max_message_length - len(marker), 1)
        last = len(self.parts) + 1 >= cfg.max_parts
        early = False
        if len(rest) > cfg.max_message_length:
            cut, separator = best_cut(rest, budget)
            body = rest[:cut]
            if last:
                body = end_at_sentence(body)
        elif not self.parts and not last:
            found = _first_sentences(rest, cfg.max_message_length, finished)
            if found is None:
                return None
            cut, separator = found
            body, early = rest[:cut], True
        else:
            return None
        if _UNSETTLED.search(body):
            return None
        whole = self._join(body)
        if self._present and count_mentions(whole, self._present, self._names) > self._limit:
            self.mass_mention = bool(self.parts)
            self.done = self.done or self.mass_mention
            return None
        self._covered = whole
        part = body if last or early else body + marker
        self.parts.append(part)
        if last:
            self.done = self.truncated = True
        return part, cut + len(separator)


RECUT_CHARS = 48  # a part can also be ready without a sentence end: a long sentence
_ENDS = frozenset(SENTENCE_END + CJK_END)


def _first_sentences(text: str, limit: int, finished: bool) -> tuple[int, str] | None:
    """The end of the last finished sentence within ``limit`` characters, and the separator
    after it; None when no sentence is finished yet. ``finished``: a space followed ``text``."""
    if finished and len(text) <= limit and text[-1:] in _ENDS:
        return len(text), ""
    for i in range(min(limit, len(text) - 1), 0, -1):
        before, here = text[i - 1], text[i]
        if before in SENTENCE_END and here == " " and i + 1 < len(text):
            return i, " "
        if before in CJK_END and here != " ":
            return i, ""
    return None
