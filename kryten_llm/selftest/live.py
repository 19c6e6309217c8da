"""The self-test's scenarios against the running bot: chat in, decision and reply out.

Each scenario says something in the simulated channel with a fresh marker in the text, then
follows that message by its correlation id: to the failing HTTP provider (the requests whose
prompt holds the marker), through the bot's diagnostic log, to its line in the response log,
to the command the simulated bridge saw on ``kryten.robot.command`` (by the line's request
ids), and back into the channel as CyTube's echo. Every wait is bounded by :data:`WAIT`.
"""

from __future__ import annotations

import json
import signal
import uuid
from typing import TYPE_CHECKING, Any

from kryten_llm.selftest.scenario import Trace, expect
from kryten_llm.selftest.scratch import BLACKOUT_WORD, FLAKY, MENTION, POOL_LINES, SCRIPTED
from kryten_llm.selftest.watch import short, wait_for

if TYPE_CHECKING:
    from kryten_llm.selftest.stack import Stack

WAIT = 8.0  # seconds for each hop of one message


def marker() -> str:
    """A fresh word that ties a message to everything it causes."""
    return "st" + uuid.uuid4().hex[:8]


def _decided(record: dict[str, Any]) -> str:
    """A response-log line in a few words: ``answered by scripted``, ``spam (identical)``."""
    reason = str(record.get("reason"))
    if record.get("provider"):
        text = f"{reason} by {record['provider']}"
        if record.get("fallback_from"):
            text += f" after {'+'.join(record['fallback_from'])}"
    elif record.get("fallback_pool"):
        text = f"{reason} from pool {record['fallback_pool']}"
    else:
        text = reason
    if record.get("offence"):
        text += f" ({record['offence']})"
    return f"responses: {text}"


async def _follow(stack: Stack, trace: Trace, correlation_id: str) -> dict[str, Any]:
    """Wait for the decision about a message; trace the bot's log events and the decision."""
    record = await stack.decision(correlation_id, WAIT)
    events = stack.log_events(correlation_id)
    if events:
        trace.hop(f"bot log: {', '.join(events)}")
    trace.hop(_decided(record))
    return record


async def _delivered(stack: Stack, trace: Trace, record: dict[str, Any], word: str) -> None:
    """The reply went out as the bridge expects and came back as CyTube's echo."""
    request_ids = record.get("request_ids") or []
    expect(bool(request_ids), "the decision names no command sent (request_ids is empty)")
    for request_id in request_ids:
        sent = await stack.command(request_id, WAIT)
        trace.hop(f"NATS {sent.command} {short(request_id)}")
        echo = stack.echoes.get(sent.text)
        expect(echo is not None, f"the bridge saw {short(request_id)} but CyTube echoed nothing")
        assert echo is not None
        trace.hop(f"echo chatMsg {short(echo)}")
    parts = " ".join(record.get("parts") or [])
    expect(not word or word in parts, f"the reply {parts!r} does not answer the message")


async def _flaky_asked(stack: Stack, trace: Trace, word: str) -> None:
    """The failing HTTP provider received the message (trace: how it answered)."""
    seen = await stack.flaky_requests(word, WAIT)
    statuses = ", ".join(str(r.status) if r.status else "no answer" for r in seen)
    trace.hop(f"HTTP {FLAKY}: {len(seen)} request{'s' if len(seen) > 1 else ''} ({statuses})")


async def _say(
    stack: Stack, trace: Trace, user: str, text: str, reason: str, *, via_flaky: bool = False
) -> tuple[dict[str, Any], str]:
    """Say ``text`` plus a fresh marker as ``user``; follow it to a decision of ``reason``.

    Returns:
        The response-log line and the marker.
    """
    word = marker()
    cid = await stack.chat(user, f"{text} {word}")
    trace.hop(f"sim chatMsg {short(cid)}")
    if via_flaky:
        await _flaky_asked(stack, trace, word)
    record = await _follow(stack, trace, cid)
    expect(record.get("reason") == reason, f"decided {record.get('reason')}, not {reason}")
    return record, word


async def mention_gets_a_reply(stack: Stack, trace: Trace) -> None:
    """A mention is answered by the default provider, in the channel."""
    record, word = await _say(stack, trace, "st_alice", f"{MENTION}, what is on?", "answered")
    expect(record.get("provider") == SCRIPTED, f"answered by {record.get('provider')}")
    await _delivered(stack, trace, record, word)


async def spam_is_refused(stack: Stack, trace: Trace) -> None:
    """The same mention twice: the first is answered, the second refused as spam."""
    text = f"{MENTION} cheap followers here {marker()}"
    first = await stack.chat("st_spammer", text)
    trace.hop(f"sim chatMsg {short(first)}")
    record = await _follow(stack, trace, first)
    expect(record.get("reason") == "answered", f"the first decided {record.get('reason')}")
    second = await stack.chat("st_spammer", text)
    trace.hop(f"same text {short(second)}")
    record = await _follow(stack, trace, second)
    expect(record.get("reason") == "spam", f"the repeat decided {record.get('reason')}, not spam")
    expect(not record.get("request_ids"), "a command was sent for the spam")
    trace.hop("no command")


async def provider_failover(stack: Stack, trace: Trace) -> None:
    """The trigger's first provider fails (HTTP 500); the next one answers."""
    record, word = await _say(
        stack, trace, "st_bob", "time for the failover drill", "answered", via_flaky=True
    )
    expect(
        record.get("provider") == SCRIPTED and FLAKY in (record.get("fallback_from") or []),
        f"answered by {record.get('provider')} after {record.get('fallback_from')}, "
        f"expected {SCRIPTED} after {FLAKY}",
    )
    await _delivered(stack, trace, record, word)


async def all_down_says_a_pool_line(stack: Stack, trace: Trace) -> None:
    """Every provider of the trigger fails: the reply is a line from its fallback pool."""
    record, _ = await _say(
        stack, trace, "st_carol", "is this the blackout drill", "fallback", via_flaky=True
    )
    expect(record.get("fallback_pool") == BLACKOUT_WORD, f"pool {record.get('fallback_pool')}")
    parts = record.get("parts") or []
    expect(bool(parts) and parts[0] in POOL_LINES, f"said {parts!r}, not a line of the pool")
    await _delivered(stack, trace, record, "")


async def reload_applies_an_edited_config(stack: Stack, trace: Trace) -> None:
    """A trigger word added to the config file, then SIGHUP: the same bot answers it at once.

    The file is put back afterwards (and reloaded), so ``--keep-running`` leaves it as written.
    """
    assert stack.scratch is not None
    assert stack.bot is not None
    word = marker()
    path = stack.scratch.config
    original = path.read_text(encoding="utf-8")
    edited = json.loads(original)
    edited["triggers"]["words"].append({"name": "reloaded", "patterns": [word]})
    seen = len(stack.bot_log.named("config_changed"))
    path.write_text(json.dumps(edited), encoding="utf-8")
    try:
        stack.bot.send_signal(signal.SIGHUP)
        trace.hop(f"SIGHUP pid {stack.bot.pid}")
        changed = await wait_for(
            lambda: stack.bot_log.named("config_changed")[seen:], WAIT, "no config_changed"
        )
        paths = [str(c.get("path")) for c in changed[0].get("changes", [])]
        trace.hop(f"bot log: config_changed {', '.join(paths)}")
        expect("triggers.words" in paths, f"the reload changed {paths}, not triggers.words")
        record, _ = await _say(stack, trace, "st_dave", f"who else likes {word}?", "answered")
        trigger = record.get("trigger") or {}
        expect(trigger.get("name") == "reloaded", f"fired {trigger}, not the new word")
        await _delivered(stack, trace, record, "")
    finally:
        path.write_text(original, encoding="utf-8")
        if stack.bot.returncode is None:
            stack.bot.send_signal(signal.SIGHUP)
