"""``--pipeline``: answer rows as chat lines, through the live bot's own reply path.

Each row (``username``, ``message``) becomes the same :class:`~kryten_llm.pipeline.jobs.Job`
the intake would queue for a mention in the first configured channel, and is handed to the
live :class:`~kryten_llm.responder.Responder` in dry-run mode: the same PromptBuilder,
ProviderManager, formatter, validator (with its corrective retry and repetition memory) as in
the channel; only the sending is left out. The response-log record the responder writes is
captured and becomes the item: ``parts`` are the chat messages the bot would have sent.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from kryten_llm.batch.store import now_iso
from kryten_llm.bus.events import ChatEvent, Envelope
from kryten_llm.config import Settings
from kryten_llm.llm.manager import ProviderManager
from kryten_llm.pipeline.decisions import Reason, TriggerMatch
from kryten_llm.pipeline.jobs import Job
from kryten_llm.pipeline.prompt import PromptBuilder, PromptInput
from kryten_llm.pipeline.validator import ReplyValidator
from kryten_llm.responder import Responder
from kryten_llm.responselog import ResponseLog
from kryten_llm.stats import Flags, Stats

REQUIRED_COLUMNS = ("username", "message")
# Outcomes where the pipeline worked and decided: the bot would have sent `parts` (possibly
# none, for an answer the validator or formatter refused).
_DECIDED = {Reason.DRY_RUN.value, Reason.ANSWERED.value}
_REFUSED = {Reason.EMPTY_REPLY.value, Reason.INVALID_REPLY.value}


class ChatLinePipeline:
    """The live reply path, minus the sending, for batch rows.

    Args:
        settings: the bot's settings (personality, formatting, validation, deadlines).
        manager: the provider manager of the batch.
    """

    def __init__(self, settings: Settings, manager: ProviderManager) -> None:
        self._settings = settings
        self._channel = settings.channels[0]
        self.prompts = PromptBuilder(settings.personality)
        self._records: dict[str, dict[str, Any]] = {}
        log = ResponseLog(Path("."), enabled=False)
        log.add_listener(self._capture)
        self._responder = Responder(
            settings,
            manager=manager,
            prompts=self.prompts,
            validator=ReplyValidator(settings.validation, self.prompts.system),
            sender=None,
            channels={},
            response_log=log,
            stats=Stats(),
            flags=Flags(dry_run=True),
        )

    @property
    def system(self) -> str:
        return self.prompts.system

    def _capture(self, record: dict[str, Any]) -> None:
        self._records[str(record.get("correlation_id"))] = record

    async def answer(self, username: str, message: str, chain: tuple[str, ...]) -> dict[str, Any]:
        """The responder's decision record for one chat line (``reason``, ``parts``...)."""
        correlation_id = f"batch-{uuid.uuid4().hex}"
        chat = ChatEvent(
            envelope=Envelope(
                "chatMsg", self._channel.channel, self._channel.domain, now_iso(), correlation_id
            ),
            username=username,
            text=message,
            raw=message,
            time_ms=int(time.time() * 1000),
        )
        trigger = TriggerMatch(
            "mention", "mention", self._settings.triggers.mention_priority, providers=chain
        )
        now = time.monotonic()
        job = Job(
            channel=self._channel,
            chat=chat,
            prompt=PromptInput(username=username, text=message, trigger=trigger),
            received_at=now,
            deadline=now + self._settings.processing.reply_deadline_seconds,
        )
        await self._responder.handle(job)
        return self._records.pop(correlation_id, {"reason": Reason.INTERNAL_ERROR.value})


def outcome(record: dict[str, Any]) -> tuple[str, str | None, str | None]:
    """(item status, response text, error) for a responder record."""
    reason = str(record.get("reason"))
    parts = record.get("parts") or []
    if reason in _DECIDED:
        return "done", " ".join(parts), None
    if reason in _REFUSED:
        return "done", "", None
    return "failed", None, str(record.get("error") or reason)
