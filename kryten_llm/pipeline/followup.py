"""Follow-ups: a user's reply to the bot counts as addressed to it, without its name.

After the bot answers a user in the channel, that user's next message within the window is a
follow-up when it reads as a reply to the bot:

- it quotes the bot: CyTube's greentext (a line starting with ``>``) or a run of at least
  ``min_quote_chars`` characters of the bot's reply;
- it names the bot's account with ``@`` (``@CynthiaRothbot``), even when the personality's
  names are different and the trigger engine would not see a mention;
- the bot's reply asked a question: the next message is its answer.

A follow-up is used once: the bot's reply to it opens a new window. Only the last answer per
user is kept, for at most :data:`MAX_USERS` users per channel.

Runs in the NATS callback: a dictionary lookup, then string checks on one message.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kryten_llm.config import FollowUpConfig

MAX_USERS = 1000
_QUOTE_SCAN = 400  # characters of a message searched for a quote: bounded work per message
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Answer:
    """What the bot last said to one user, and when (monotonic seconds)."""

    at: float
    text: str
    asked: bool


def _normal(text: str) -> str:
    return _SPACE.sub(" ", text.casefold()).strip()


class FollowUps:
    """The bot's last answer to each user of one channel."""

    def __init__(self) -> None:
        self._answers: OrderedDict[str, Answer] = OrderedDict()

    def answered(self, username: str, parts: tuple[str, ...], now: float) -> None:
        """The bot just answered ``username`` with ``parts``."""
        text = " ".join(parts)
        key = username.lower()
        self._answers.pop(key, None)
        self._answers[key] = Answer(now, _normal(text), "?" in text)
        if len(self._answers) > MAX_USERS:
            self._answers.popitem(last=False)

    def match(
        self,
        config: FollowUpConfig,
        *,
        username: str,
        text: str,
        css_class: str,
        bot_account: str,
        now: float,
    ) -> str | None:
        """How ``text`` replies to the bot (``quote``, ``at_name``, ``answer``), or ``None``.

        A match uses up the answer it replies to.
        """
        key = username.lower()
        answer = self._answers.get(key)
        if answer is None or now - answer.at > config.window_seconds:
            return None
        how = _how(config, answer, text, css_class, bot_account)
        if how is not None:
            del self._answers[key]
        return how


def _how(
    config: FollowUpConfig, answer: Answer, text: str, css_class: str, bot_account: str
) -> str | None:
    if f"@{bot_account.lower()}" in text.lower():
        return "at_name"
    said = _normal(text[:_QUOTE_SCAN])
    if css_class == "greentext" or text.lstrip().startswith(">"):
        return "quote"
    size = config.min_quote_chars
    if len(said) >= size and any(
        said[i : i + size] in answer.text for i in range(len(said) - size + 1)
    ):
        return "quote"
    if answer.asked:
        return "answer"
    return None
