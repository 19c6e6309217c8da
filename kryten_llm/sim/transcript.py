"""The demo's terminal view: the channel as a live transcript, with the bot's decisions.

Chat lines come from the simulated channel as it publishes them (the bot's replies included,
as CyTube echoes them); decisions come from the bot's response-log listener and are printed
under the line they answer, in a compact form: answered by which provider in how many ms,
rate-limited by which limit, ignored and why. Colours only on a terminal.
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO

from kryten_llm.pipeline.decisions import Reason
from kryten_llm.pipeline.outcome import Outcome

_KEEP_LINES = 2000  # recent lines kept in memory, for tests and summaries
_RESET, _DIM, _BOLD = "\033[0m", "\033[2m", "\033[1m"
_GREEN, _YELLOW, _RED, _CYAN = "\033[32m", "\033[33m", "\033[31m", "\033[36m"
_IGNORED = frozenset({Reason.OTHER_BOT, Reason.IGNORED_USER, Reason.COMMAND, Reason.SHADOW_MUTED})


def describe(outcome: Outcome) -> tuple[str, str]:
    """A decision as (colour, one short line)."""
    reason = outcome.reason
    if reason is Reason.ANSWERED:
        parts = len(outcome.parts or ())
        extra = f", {parts} messages" if parts > 1 else ""
        return _GREEN, (
            f"answered by {outcome.provider} in {outcome.latency_ms or 0:.0f} ms "
            f"(total {outcome.total_ms or 0:.0f} ms{extra})"
        )
    if reason is Reason.FALLBACK:
        return _YELLOW, f"every provider failed: said a line from pool {outcome.fallback_pool}"
    if reason is Reason.DRY_RUN:
        return _CYAN, "dry run: would have answered " + " / ".join(outcome.parts or ())
    if reason is Reason.RATE_LIMITED:
        return _YELLOW, (
            f"rate limited ({outcome.limit}), free again in {outcome.retry_after or 0:.0f} s"
        )
    if reason is Reason.SPAM:
        return _RED, (
            f"ignored as spam ({outcome.offence or ''}, strike {outcome.strikes}), "
            f"penalty {outcome.retry_after or 0:.0f} s"
        )
    if reason in _IGNORED:
        return _DIM, f"ignored: {reason.value.replace('_', ' ')}"
    if reason is Reason.INVALID_REPLY:
        return _YELLOW, f"reply refused by the validator ({outcome.check})"
    if reason is Reason.LLM_FAILED:
        return _RED, f"LLM failed: {outcome.error or ''}"
    return _YELLOW, reason.value.replace("_", " ")


class Transcript:
    """Prints chat lines and decisions to ``out`` as they happen."""

    def __init__(self, out: IO[str] | None = None, *, bot: str, color: bool | None = None) -> None:
        self._out = out or sys.stdout
        self._bot = bot
        self._color = self._out.isatty() if color is None else color
        self._started = time.monotonic()
        self.lines: list[str] = []
        self.closed = False

    def _paint(self, colour: str, text: str) -> str:
        return f"{colour}{text}{_RESET}" if self._color else text

    def _emit(self, text: str) -> None:
        self.lines.append(text)
        if len(self.lines) > _KEEP_LINES:
            del self.lines[: _KEEP_LINES // 2]
        if self.closed:
            return
        try:
            print(text, file=self._out, flush=True)
        except (BrokenPipeError, ValueError):
            # The reader went away (`| head`, a closed terminal): keep running, stop printing.
            self.closed = True
            if self._out is sys.stdout:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())

    def _clock(self) -> str:
        elapsed = int(time.monotonic() - self._started)
        return f"[{elapsed // 60:02d}:{elapsed % 60:02d}]"

    def banner(self, text: str) -> None:
        for line in text.splitlines():
            self._emit(self._paint(_BOLD, line))

    def chat(self, username: str, text: str, correlation_id: str, is_pm: bool) -> None:
        """A chat line as the channel shows it."""
        name = self._paint(_CYAN + _BOLD, username) if username == self._bot else username
        self._emit(f"{self._paint(_DIM, self._clock())} {name}: {text}")

    def event(self, text: str) -> None:
        """Something that is not chat (a video change)."""
        self._emit(f"{self._paint(_DIM, self._clock())} {self._paint(_DIM, '* ' + text)}")

    def decision(self, outcome: Outcome) -> None:
        """What the bot decided about a message aimed at it."""
        colour, line = describe(outcome)
        who = outcome.username
        self._emit(f"        {self._paint(colour, f'-> {who}: {line}')}")
