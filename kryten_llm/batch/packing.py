"""``--rows-per-request N``: several rows in one request, the answers mapped back by row key.

Cheap models are often billed per request or have a high fixed cost per call; packing cuts the
number of calls by N. The rows go to the model as a JSON array of ``{"key", "prompt"}``
objects and the model is asked for a JSON array of ``{"key", "response"}`` objects. Answers are
matched by key, never by position, so a model that reorders them is fine; rows whose key is
missing, duplicated or unknown come back in :attr:`Unpacked.missing` and the runner asks them
again one by one. A malformed answer (not a JSON array) leaves every row missing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kryten_llm.batch.jsoncheck import strip_fence
from kryten_llm.llm.base import ChatMessage, CompletionRequest

_INSTRUCTION = (
    'You will receive several independent tasks as a JSON array of objects with a "key" and '
    'a "prompt". Answer every task on its own. Reply with only a JSON array (no code fence, '
    'no other text) holding one object per task: {{"key": <the task\'s key, unchanged>, '
    '"response": <your answer{kind}>}}. There are {count} tasks; give {count} answers.'
)


@dataclass(slots=True)
class Unpacked:
    """Answers found in a packed reply (key to answer text) and the keys still unanswered."""

    answers: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


def packed_request(
    system: str | None, tasks: Sequence[tuple[str, str]], *, expect_json: bool
) -> CompletionRequest:
    """One request asking ``tasks`` ((key, prompt) pairs) at once.

    Args:
        system: the run's system prompt, if any; the packing instruction follows it.
        tasks: the rows, as (key, prompt).
        expect_json: answers are JSON values themselves rather than text.
    """
    kind = " as a JSON value" if expect_json else " as a string"
    instruction = _INSTRUCTION.format(kind=kind, count=len(tasks))
    messages = []
    messages.append(ChatMessage("system", f"{system}\n\n{instruction}" if system else instruction))
    body = json.dumps([{"key": key, "prompt": prompt} for key, prompt in tasks], ensure_ascii=False)
    messages.append(ChatMessage("user", body))
    return CompletionRequest(messages=tuple(messages))


def unpack(text: str, keys: Sequence[str]) -> Unpacked:
    """Map a packed reply back to its rows.

    Args:
        text: the model's answer.
        keys: the keys that were asked, in order.

    Returns:
        The answers by key (a non-string response is kept as its JSON text) and the keys
        without exactly one usable answer.
    """
    result = Unpacked()
    try:
        data: Any = json.loads(strip_fence(text).strip())
    except ValueError:
        data = None
    if isinstance(data, dict):  # {"answers": [...]} and similar single-key wrappers
        lists = [v for v in data.values() if isinstance(v, list)]
        data = lists[0] if len(lists) == 1 else None
    wanted = set(keys)
    seen: dict[str, int] = {}
    if isinstance(data, list):
        for entry in data:
            if not isinstance(entry, dict) or "response" not in entry:
                continue
            key = str(entry.get("key"))
            if key not in wanted:
                continue
            seen[key] = seen.get(key, 0) + 1
            value = entry["response"]
            result.answers[key] = value if isinstance(value, str) else json.dumps(value)
    for key in keys:
        if seen.get(key) != 1:
            result.answers.pop(key, None)
            result.missing.append(key)
    return result
