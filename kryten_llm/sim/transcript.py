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
from typing import IO, Any

_KEEP_LINES = 2000  # recent lines kept in memory, for tests and summaries
_RESET, _DIM, _BOLD = "\033[0m", "\033[2m", "\033[1m"
_GREEN, _YELLOW, _RED, _CYAN = "\033[32m", "\033[33m", "\033[31m", "\033[36m"


def describe(record: dict[str, Any]) -> tuple[str, str]:
    """A decision record as (colour, one short line)."""
    reason = record.get("reason", "?")
    if reason == "answered":
        parts = len(record.get("parts") or [])
        extra = f", {parts} messages" if parts > 1 else ""
        return _GREEN, (
            f"answered by {record.get('provider')} in {record.get('latency_ms', 0):.0f} ms "
            f"(total {record.get('total_ms', 0):.0f} ms{extra})"
        )
    if reason == "dry_run":
        return _CYAN, "dry run: would have answered " + " / ".join(record.get("parts") or [])
    if reason == "rate_limited":
        return _YELLOW, (
            f"rate limited ({record.get('limit')}), free again in "
            f"{record.get('retry_after', 0):.0f} s"
        )
    if reason == "spam":
        offence = record.get("offence", "")
        return _RED, (
            f"ignored as spam ({offence}, strike {record.get('strikes')}), "
            f"penalty {record.get('retry_after', 0):.0f} s"
        )
    if reason in ("other_bot", "ignored_user", "command", "shadow_muted"):
        return _DIM, f"ignored: {reason.replace('_', ' ')}"
    if reason == "invalid_reply":
        return _YELLOW, f"reply refused by the validator ({record.get('check')})"
    if reason == "llm_failed":
        return _RED, f"LLM failed: {record.get('error', '')}"
    return _YELLOW, reason.replace("_", " ")


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

    def decision(self, record: dict[str, Any]) -> None:
        """A response-log record from the bot."""
        colour, line = describe(record)
        who = record.get("username", "?")
        self._emit(f"        {self._paint(colour, f'-> {who}: {line}')}")
