"""The batch runner against a real scripted OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from kryten_llm.batch import run_batch
from kryten_llm.batch.api import execute
from kryten_llm.batch.options import BatchOptions
from kryten_llm.batch.packing import unpack
from kryten_llm.batch.plan import make_plan
from kryten_llm.batch.progress import Progress
from kryten_llm.batch.store import RunStore
from kryten_llm.config import Settings
from tests.batch_helpers import batch_settings, last_user
from tests.openai_server import ScriptedOpenAIServer, drip, reply, status


async def _run(
    tmp: Path, rows: Any, llm: ScriptedOpenAIServer, settings: Settings | None = None, **kw: Any
) -> Any:
    kw.setdefault("providers", [f"openai:{llm.base_url}"])
    return await run_batch(
        rows,
        db=str(tmp / "b.db"),
        settings=settings or batch_settings(tmp),
        no_log=kw.pop("no_log", True),
        **kw,
    )


async def test_concurrent_requests_really_overlap(tmp_path: Path) -> None:
    """With --concurrency 8, eight slow requests are all at the server at the same time."""
    async with ScriptedOpenAIServer(default=drip(chunks=2, interval=0.5, text="ok")) as llm:
        result = await _run(tmp_path, [f"q{i}" for i in range(8)], llm, concurrency=8)
        arrivals = sorted(r.received_at for r in llm.completions)
    assert result.completed == 8
    # Each answer takes at least 1 s to drip out; all eight arrived before the first ended.
    assert arrivals[-1] - arrivals[0] < 1.0


async def test_concurrency_one_is_sequential(tmp_path: Path) -> None:
    async with ScriptedOpenAIServer(default=drip(chunks=2, interval=0.1, text="ok")) as llm:
        await _run(tmp_path, ["a", "b", "c"], llm, concurrency=1)
        arrivals = [r.received_at for r in llm.completions]
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert all(gap >= 0.2 for gap in gaps), gaps


async def test_stop_on_error_stops_at_the_first_failed_row(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    async with ScriptedOpenAIServer(
        reply("one"), reply("two"), status(400), default=reply("late")
    ) as llm:
        result = await _run(
            tmp_path,
            [f"q{i}" for i in range(10)],
            llm,
            concurrency=1,
            stop_on_error=True,
            output=str(out),
        )
        asked = len(llm.completions)
    assert result.status == "failed"
    assert (result.completed, result.failed) == (2, 1)
    assert asked == 3
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["status"] for r in records] == ["done", "done", "failed"]
    assert "400" in records[2]["error"]


async def test_without_stop_on_error_every_row_is_tried(tmp_path: Path) -> None:
    async with ScriptedOpenAIServer(reply("one"), status(400), default=reply("fine")) as llm:
        result = await _run(tmp_path, [f"q{i}" for i in range(6)], llm, concurrency=1)
    assert result.status == "completed"
    assert (result.completed, result.failed) == (5, 1)
    assert not result.ok


async def test_retry_after_is_honoured_and_counted(tmp_path: Path) -> None:
    async with ScriptedOpenAIServer(
        status(429, headers={"Retry-After": "0.3"}), reply("after the wait")
    ) as llm:
        result = await _run(tmp_path, ["q"], llm)
        times = [r.received_at for r in llm.completions]
    (record,) = result.records()
    assert record["response"] == "after the wait"
    assert record["attempts"] == 2
    assert times[1] - times[0] >= 0.3


async def test_expect_json_retries_invalid_answers_with_a_nudge(tmp_path: Path) -> None:
    async with ScriptedOpenAIServer(
        reply("Sure! Here it is: {oops"), reply('```json\n{"ok": true}\n```')
    ) as llm:
        result = await _run(tmp_path, ["give json"], llm, expect_json=True)
        second = llm.completions[1].json
    (record,) = result.records()
    assert record["status"] == "done"
    assert json.loads(record["response"]) == {"ok": True}
    assert record["attempts"] == 2
    assert second is not None
    assert "valid JSON" in last_user(second)


async def test_expect_json_fails_after_the_retries(tmp_path: Path) -> None:
    async with ScriptedOpenAIServer(default=reply("never json")) as llm:
        result = await _run(tmp_path, ["q"], llm, expect_json=True, json_retries=2)
        asked = len(llm.completions)
    (record,) = result.records()
    assert record["status"] == "failed"
    assert "not valid JSON" in record["error"]
    assert asked == 3


async def test_expect_json_schema_rejects_a_mismatch_then_accepts(tmp_path: Path) -> None:
    pytest.importorskip("jsonschema")
    schema = tmp_path / "schema.json"
    schema.write_text(
        json.dumps(
            {
                "type": "object",
                "required": ["rating"],
                "properties": {"rating": {"type": "integer", "minimum": 1, "maximum": 5}},
            }
        )
    )
    async with ScriptedOpenAIServer(reply('{"rating": 9}'), reply('{"rating": 4}')) as llm:
        result = await _run(tmp_path, ["rate it"], llm, schema=str(schema))
        nudge = last_user(llm.completions[1].json or {})
    (record,) = result.records()
    assert json.loads(record["response"]) == {"rating": 4}
    assert "rating" in nudge
    assert "maximum" in nudge or "9" in nudge


def _packed_answer(body: dict[str, Any]) -> str:
    """Answer a packed request in shuffled order, each row by its key."""
    try:
        tasks = json.loads(last_user(body))
    except ValueError:
        tasks = None
    if not isinstance(tasks, list):
        return f"single: {last_user(body)}"
    answers = [{"key": t["key"], "response": f"A:{t['prompt']}"} for t in tasks]
    random.Random(len(tasks)).shuffle(answers)
    return json.dumps(answers)


async def test_rows_per_request_maps_answers_back_by_key(tmp_path: Path) -> None:
    rows = [f"p{i}" for i in range(10)]
    async with ScriptedOpenAIServer(responder=_packed_answer) as llm:
        result = await _run(tmp_path, rows, llm, rows_per_request=4, concurrency=2)
        asked = len(llm.completions)
    assert asked == 3  # 4 + 4 + 2
    records = list(result.records())
    assert [r["response"] for r in records] == [f"A:{p}" for p in rows]
    assert sum(r["attempts"] for r in records) == 3
    assert result.summary[0].requests == 3


async def test_short_packed_answer_is_split_and_asked_row_by_row(tmp_path: Path) -> None:
    short = json.dumps([{"key": "0", "response": "A:p0"}, {"key": "1", "response": "A:p1"}])
    async with ScriptedOpenAIServer(reply(short), responder=_packed_answer) as llm:
        result = await _run(tmp_path, ["p0", "p1", "p2", "p3"], llm, rows_per_request=4)
        asked = len(llm.completions)
    records = list(result.records())
    assert [r["response"] for r in records] == ["A:p0", "A:p1", "single: p2", "single: p3"]
    assert asked == 3


async def test_malformed_packed_answer_is_asked_row_by_row(tmp_path: Path) -> None:
    async with ScriptedOpenAIServer(reply("no json at all"), responder=_packed_answer) as llm:
        result = await _run(tmp_path, ["p0", "p1"], llm, rows_per_request=2)
    assert [r["response"] for r in result.records()] == ["single: p0", "single: p1"]


def test_unpack_refuses_duplicate_and_unknown_keys() -> None:
    answer = json.dumps(
        [
            {"key": "1", "response": "a"},
            {"key": "1", "response": "b"},
            {"key": "9", "response": "c"},
            {"key": "2", "response": {"x": 1}},
        ]
    )
    unpacked = unpack(answer, ["1", "2", "3"])
    assert unpacked.answers == {"2": '{"x": 1}'}
    assert unpacked.missing == ["1", "3"]


async def test_several_providers_answer_every_row_and_are_summarised(tmp_path: Path) -> None:
    async with (
        ScriptedOpenAIServer(
            default=reply("from A", usage={"prompt_tokens": 10, "completion_tokens": 2})
        ) as a,
        ScriptedOpenAIServer(default=reply("from B")) as b,
    ):
        result = await _run(
            tmp_path,
            ["x", "y", "z"],
            a,
            providers=[f"openai:{a.base_url}", f"openai:{b.base_url}"],
            models=["small", "large"],
        )
        assert {r.json["model"] for r in a.completions if r.json} == {"small"}
        assert {r.json["model"] for r in b.completions if r.json} == {"large"}
    records = list(result.records())
    assert len(records) == 6
    by_model = {s.model: s for s in result.summary}
    assert by_model[f"openai:{a.base_url}/small"].prompt_tokens == 30
    assert by_model[f"openai:{b.base_url}/large"].successes == 3
    assert {r["response"] for r in records} == {"from A", "from B"}


async def test_answered_rows_are_reused_by_a_new_run_unless_forced(tmp_path: Path) -> None:
    async with ScriptedOpenAIServer() as llm:
        first = await _run(tmp_path, ["a", "b"], llm)
        second = await _run(tmp_path, ["a", "b", "c"], llm)
        asked_after_second = len(llm.completions)
        third = await _run(tmp_path, ["a"], llm, force=True)
        asked_after_third = len(llm.completions)
    assert first.batch_id != second.batch_id
    assert asked_after_second == 3  # only "c" was new
    assert [r["cached"] for r in second.records()] == [True, True, False]
    assert [r["response"] for r in second.records()] == ["echo: a", "echo: b", "echo: c"]
    assert asked_after_third == 4
    assert third.summary[0].cached == 0


async def test_pipeline_mode_shows_the_chat_parts_the_bot_would_send(tmp_path: Path) -> None:
    long = "Sure! Here's my answer: " + "Plan 9 is a wonderful disaster of a film. " * 10
    rows = [
        {"username": "alice", "message": "cynthia, best bad movie?"},
        {"username": "bob", "message": "hey cynthia"},
    ]
    answers = {"alice": long, "bob": "/clear the chat please"}

    def by_user(body: dict[str, Any]) -> str:
        user = last_user(body)
        return next(text for name, text in answers.items() if f"{name}: «" in user)

    settings = batch_settings(tmp_path)
    async with ScriptedOpenAIServer(responder=by_user) as llm:
        result = await _run(tmp_path, rows, llm, settings=settings, pipeline=True)
        system = (llm.completions[0].json or {})["messages"][0]["content"]
        asked_streamed = {(r.json or {}).get("stream") for r in llm.completions}
    assert "CynthiaRothbot" in system  # the live bot's personality prompt
    assert asked_streamed == {False}  # batch calls are never streamed, --pipeline included
    records = {r["username"]: r for r in result.records()}
    alice = records["alice"]
    assert alice["reason"] == "dry_run"
    assert len(alice["parts"]) > 1
    assert all(len(p) <= settings.formatting.max_message_length for p in alice["parts"])
    assert not alice["parts"][0].startswith("Sure")  # boilerplate stripped, as live
    assert not records["bob"]["parts"][0].startswith("/")


async def test_pipeline_needs_username_and_message_columns(tmp_path: Path) -> None:
    from kryten_llm.errors import ConfigError

    async with ScriptedOpenAIServer() as llm:
        with pytest.raises(ConfigError, match="'username'"):
            await _run(tmp_path, [{"user": "a", "message": "hi"}], llm, pipeline=True)
        assert llm.completions == []


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param({"temperature": 0.2}, {"temperature": 0.9}, id="temperature"),
        pytest.param({"max_tokens": 5}, {"max_tokens": 500}, id="max-tokens"),
        pytest.param({}, {"temperature": 0.2}, id="unset->set"),
        pytest.param({}, {"rows_per_request": 2}, id="packed"),
    ],
)
async def test_answers_are_not_reused_across_sampling_options(
    tmp_path: Path, first: dict[str, Any], second: dict[str, Any]
) -> None:
    """An answer given at another temperature, token cap or packing is another answer."""
    async with ScriptedOpenAIServer() as llm:
        await _run(tmp_path, ["a"], llm, **first)
        again = await _run(tmp_path, ["a"], llm, **second)
        same = await _run(tmp_path, ["a"], llm, **second)
        asked = len(llm.completions)
    assert [r["cached"] for r in again.records()] == [False]
    assert [r["cached"] for r in same.records()] == [True]
    assert asked == 2


async def test_resume_after_the_input_changed_asks_the_changed_rows_again(
    tmp_path: Path,
) -> None:
    """Stored items are matched by prompt, not only by row number: an edited row is asked
    again and replaces its old answer; rows gone from the file leave the output."""
    path = tmp_path / "in.txt"
    path.write_text("a\nb\nc\nd\n")
    async with ScriptedOpenAIServer() as llm:
        first = await _run(tmp_path, path, llm, batch_id="r")
        path.write_text("a\nB\nc\n")
        resumed = await _run(tmp_path, None, llm, batch_id="r", resume=True)
        asked = [last_user(r.json or {}) for r in llm.completions]
    assert first.completed == 4
    assert sorted(asked[:4]) == ["a", "b", "c", "d"]
    assert asked[4:] == ["B"]
    records = list(resumed.records())
    assert [(r["row"], r["response"]) for r in records] == [
        (0, "echo: a"),
        (1, "echo: B"),
        (2, "echo: c"),
    ]
    assert (resumed.status, resumed.completed, resumed.failed) == ("completed", 3, 0)


async def test_a_cancel_after_the_last_answer_leaves_the_run_completed(tmp_path: Path) -> None:
    """``batch cancel`` landing once every row is answered does not turn a finished run into
    a cancelled one (exit 130, "resumable" with nothing left to do)."""
    db = tmp_path / "b.db"

    def cancel_on_last(body: dict[str, Any]) -> str:
        if last_user(body) == "b":  # the last row: cancel while its answer is on the way
            with contextlib.closing(sqlite3.connect(db)) as conn:
                conn.execute("UPDATE batch_runs SET status = 'cancelling' WHERE id = 'c'")
                conn.commit()
        return "ok"

    async with ScriptedOpenAIServer(responder=cancel_on_last) as llm:
        result = await _run(tmp_path, ["a", "b"], llm, batch_id="c", concurrency=1)
    assert (result.status, result.completed) == ("completed", 2)


async def test_resume_looks_rows_up_in_the_store_by_chunk_not_by_row(tmp_path: Path) -> None:
    """Resuming a run of 2,000 answered rows costs a few queries, not one (or two) per row on
    the event loop."""
    db = tmp_path / "b.db"
    settings = batch_settings(tmp_path)
    rows = [f"q{i}" for i in range(2000)]
    first = await run_batch(
        rows, providers=["scripted"], batch_id="big", db=str(db), settings=settings, no_log=True
    )
    assert first.completed == 2000
    statements: list[str] = []
    with RunStore(db) as store:
        store._conn.set_trace_callback(statements.append)
        plan = make_plan(
            BatchOptions(resume=True, batch_id="big", db=str(db)),
            rows=rows,
            settings=settings,
            store=store,
        )
        result = await execute(plan, store, progress=Progress(enabled=False))
    assert (result.status, result.completed) == ("completed", 2000)
    lookups = [s for s in statements if s.lstrip().startswith("SELECT") and "batch_items" in s]
    assert len(lookups) < 40, len(lookups)
