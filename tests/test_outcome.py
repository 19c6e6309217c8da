"""The response-log line as a type: the JSON it writes and what reading it back gives."""

from __future__ import annotations

import json

from kryten_llm.pipeline.decisions import Reason
from kryten_llm.pipeline.outcome import SCHEMA, FirstAttempt, Outcome, Tokens


def answered() -> Outcome:
    return Outcome(
        "c1", "MyChannel", "cytu.be", "alice", "2026-11-30T01:00:00+00:00", "chat",
        "cynthia, hi", "mention", "mention", Reason.ANSWERED,
        logged_at="2026-11-30T01:00:01+00:00", queued_ms=0.2, total_ms=312.5,
        provider="main", model="m", fallback_from=("primary",), cost_usd=None,
        latency_ms=300.0, usage=Tokens(120, 30),
        first_attempt=FirstAttempt("repetition", "same again", "primary"),
        removed=("markdown",), parts=("hi there",), truncated=False, request_ids=("r1",),
    )  # fmt: skip


def test_an_answer_is_written_with_the_keys_of_every_earlier_version_plus_schema() -> None:
    data = answered().to_json()
    assert data["schema"] == SCHEMA
    assert data["answered"] is True
    assert data["reason"] == "answered"
    assert data["trigger"] == {"kind": "mention", "name": "mention"}
    assert data["usage"] == {"prompt_tokens": 120, "completion_tokens": 30}
    assert data["first_attempt"] == {
        "rejected": "repetition",
        "text": "same again",
        "provider": "primary",
    }
    assert data["parts"] == ["hi there"]
    assert "cost_usd" in data  # a provider answered: its call fields are all written
    assert data["cost_usd"] is None
    assert "rank" not in data  # not a refusal that depends on rank
    assert "trigger_kind" not in data


def test_a_line_read_back_gives_the_same_facts() -> None:
    written = answered()
    read = Outcome.from_json(json.loads(json.dumps(written.to_json())))
    assert read is not None
    assert read.reason is Reason.ANSWERED
    assert read.answered
    assert (read.username, read.trigger_name, read.provider) == ("alice", "mention", "main")
    assert read.usage == Tokens(120, 30)
    assert read.parts == ("hi there",)
    assert read.total_ms == 312.5


def test_lines_that_are_not_outcomes_read_as_none_and_odd_values_as_absent() -> None:
    assert Outcome.from_json({"reason": "no such reason"}) is None
    assert Outcome.from_json({"hello": "world"}) is None
    odd = Outcome.from_json({"reason": "fallback", "total_ms": "fast", "usage": [1, 2]})
    assert odd is not None
    assert odd.answered
    assert odd.total_ms is None
    assert odd.usage is None


def test_a_fallback_line_says_no_provider_answered() -> None:
    pool = Outcome(
        "c2", "MyChannel", "cytu.be", "bob", None, "pm", "hi", "pm", "pm", Reason.FALLBACK,
        fallback_pool="personality-cynthia",
    )  # fmt: skip
    data = pool.to_json()
    assert data["provider"] is None
    assert data["kind"] == "pm"
    assert "message_time" not in data
