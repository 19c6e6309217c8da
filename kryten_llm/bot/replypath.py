"""The answering half of the bot: from a queued job to a reply, built in one place.

The prompt builder (templates and context budget), the validator and the responder are put
together here for the live bot (:meth:`kryten_llm.bot.assembly.Bot.start_answering`) and for
``kryten-llm batch --pipeline`` alike, so both send the identical prompt for the same message
and config. It is a module of its own so that the bot can listen to its channels before this
half (and the providers behind it) is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kryten_llm.bot.responder import Responder
from kryten_llm.pipeline.prompt import PromptBuilder
from kryten_llm.pipeline.validator import RecentReplies, ReplyValidator

if TYPE_CHECKING:
    from kryten_llm.bot.intake import ChannelContext
    from kryten_llm.bot.responselog import ResponseLog
    from kryten_llm.bus.sender import ChatSender
    from kryten_llm.config import Settings
    from kryten_llm.llm.manager import ProviderManager
    from kryten_llm.pipeline.fallback import FallbackPools
    from kryten_llm.pipeline.stats import Flags, Stats


@dataclass(slots=True)
class ReplyPath:
    """From a job to a reply: the parts the live bot and ``batch --pipeline`` share."""

    prompts: PromptBuilder
    validator: ReplyValidator
    responder: Responder


def build_reply_path(
    settings: Settings,
    manager: ProviderManager,
    *,
    response_log: ResponseLog,
    stats: Stats,
    flags: Flags,
    sender: ChatSender | None = None,
    channels: dict[str, ChannelContext] | None = None,
    pools: FallbackPools | None = None,
    recent: RecentReplies | None = None,
) -> ReplyPath:
    """The prompt builder (templates and context budget), validator and responder.

    Args:
        settings: the whole configuration.
        manager: asks the providers (see :func:`kryten_llm.llm.build_manager`).
        response_log: where each outcome is written.
        stats: counters of decisions.
        flags: the operator's switches (dry-run: nothing is sent).
        sender: sends replies; ``None`` never sends (batch).
        channels: channel state the reply reads (who is present); none for batch.
        pools: fallback lines for when every provider fails.
        recent: the replies sent recently, shared with the validators built before this one
            (so a reload does not forget what the bot said).
    """
    prompts = PromptBuilder(settings.personality, settings.prompts)
    validator = ReplyValidator(settings.validation, prompts.system, recent=recent)
    responder = Responder(
        settings,
        manager=manager,
        prompts=prompts,
        validator=validator,
        sender=sender,
        channels=channels if channels is not None else {},
        response_log=response_log,
        stats=stats,
        flags=flags,
        pools=pools,
    )
    return ReplyPath(prompts, validator, responder)
