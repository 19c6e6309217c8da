"""``--pipeline``: answer rows as chat lines, through the live bot's own reply path.

Each row (``username``, ``message``) becomes the same :class:`~kryten_llm.pipeline.jobs.Job`
the intake would queue for a mention in the first configured channel, and is handed to the
reply path built by :func:`kryten_llm.bot.replypath.build_reply_path` in dry-run mode: the same
prompt builder (templates and context budget included), provider manager, formatter and
validator (with its corrective retry and repetition memory) as in the channel; only the sending
is left out. The responder's :class:`~kryten_llm.pipeline.outcome.Outcome` becomes the item:
``parts`` are the chat messages the bot would have sent.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from kryten_llm.batch.storedb import now_iso
from kryten_llm.batch.storetypes import ItemStatus
from kryten_llm.batch.usage import Answer
from kryten_llm.bot.replypath import build_reply_path
from kryten_llm.bot.responselog import ResponseLog
from kryten_llm.bus.events import ChatEvent, Envelope
from kryten_llm.config import Settings
from kryten_llm.llm.manager import ProviderManager
from kryten_llm.pipeline.decisions import Reason, TriggerMatch
from kryten_llm.pipeline.jobs import Job
from kryten_llm.pipeline.outcome import Outcome
from kryten_llm.pipeline.prompt import PromptInput
from kryten_llm.pipeline.stats import Flags, Stats

REQUIRED_COLUMNS = ("username", "message")
# Outcomes where the pipeline worked and decided: the bot would have sent `parts` (possibly
# none, for an answer the validator or formatter refused).
_DECIDED = frozenset({Reason.DRY_RUN, Reason.ANSWERED})
_REFUSED = frozenset({Reason.EMPTY_REPLY, Reason.INVALID_REPLY})


class ChatLinePipeline:
    """The live reply path, minus the sending, for batch rows.

    Args:
        settings: the bot's settings (personality, prompts, formatting, validation, deadlines).
        manager: the provider manager of the batch.
    """

    def __init__(self, settings: Settings, manager: ProviderManager) -> None:
        self._settings = settings
        self._channel = settings.channels[0]
        self._path = build_reply_path(
            settings,
            manager,
            response_log=ResponseLog(Path("."), enabled=False),
            stats=Stats(),
            flags=Flags(dry_run=True),
        )

    async def answer(self, username: str, message: str, chain: tuple[str, ...]) -> Outcome:
        """What the responder decided for one chat line (``reason``, ``parts``...)."""
        chat = ChatEvent(
            envelope=Envelope(
                "chatMsg",
                self._channel.channel,
                self._channel.domain,
                now_iso(),
                f"batch-{uuid.uuid4().hex}",
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
            prompt=PromptInput(
                username=username,
                text=message,
                trigger=trigger,
                channel=self._channel.channel,
            ),
            received_at=now,
            deadline=now + self._settings.processing.reply_deadline_seconds,
        )
        return await self._path.responder.handle(job)


def item_answer(result: Outcome) -> Answer:
    """How a batch item ends for a responder outcome; the reason and parts go along."""
    extra = {"reason": result.reason.value, "parts": list(result.parts or ())}
    if result.reason in _DECIDED:
        return Answer(ItemStatus.DONE, response=" ".join(result.parts or ()), extra=extra)
    if result.reason in _REFUSED:
        return Answer(ItemStatus.DONE, response="", extra=extra)
    return Answer(ItemStatus.FAILED, error=result.error or result.reason.value, extra=extra)
