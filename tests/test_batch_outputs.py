"""Batch outputs: CSV, JSON and JSONL keep the input columns and add the results, atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kryten_llm.batch import run_batch
from kryten_llm.batch.outputs import output_format, write_records
from kryten_llm.errors import ConfigError
from tests.batch_helpers import batch_settings, last_user, read_output
from tests.openai_server import ScriptedOpenAIServer


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl"])
async def test_output_keeps_input_columns_and_adds_results(tmp_path: Path, fmt: str) -> None:
    source = tmp_path / "films.csv"
    source.write_text("title,response\nPlan 9,x\nEraserhead,y\n", encoding="utf-8")
    out = tmp_path / f"out.{fmt}"
    async with ScriptedOpenAIServer() as llm:
        result = await run_batch(
            source,
            template="Describe {title}",
            providers=[f"openai:{llm.base_url}"],
            output=str(out),
            db=str(tmp_path / "b.db"),
            settings=batch_settings(tmp_path),
        )
    assert result.ok
    records = read_output(out)
    assert [r["title"] for r in records] == ["Plan 9", "Eraserhead"]
    # The input's own "response" column is kept; the answer goes to batch_response.
    assert [r["response"] for r in records] == ["x", "y"]
    assert [r["batch_response"] for r in records] == [
        "echo: Describe Plan 9",
        "echo: Describe Eraserhead",
    ]
    for record in records:
        assert record["status"] == "done"
        # No --model: "auto", the first model the server lists.
        assert record["model"] == f"openai:{llm.base_url}/scripted-model"
        assert str(record["attempts"]) == "1"
        assert record["latency_ms"] not in (None, "")
    assert [str(r["row"]) for r in records] == ["0", "1"]
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")], "temporary file left"


async def test_format_flag_overrides_the_extension(tmp_path: Path) -> None:
    out = tmp_path / "results.txt"
    async with ScriptedOpenAIServer() as llm:
        await run_batch(
            ["a", "b"],
            providers=[f"openai:{llm.base_url}"],
            output=str(out),
            output_format="jsonl",
            db=str(tmp_path / "b.db"),
            settings=batch_settings(tmp_path),
        )
    lines = out.read_text().splitlines()
    assert [json.loads(line)["response"] for line in lines] == ["echo: a", "echo: b"]


def test_unknown_output_extension_is_a_usage_error() -> None:
    with pytest.raises(ConfigError, match=r"\.csv, \.json or \.jsonl"):
        output_format(Path("out.xml"))


def test_a_failed_write_leaves_the_previous_file_whole(tmp_path: Path) -> None:
    """Writing goes to a temporary file renamed at the end: an error midway changes nothing."""
    out = tmp_path / "out.json"
    write_records(out, "json", [{"a": 1}], header=["a"])

    def broken() -> object:
        yield {"a": 2}
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_records(out, "json", broken(), header=["a"])  # type: ignore[arg-type]
    assert json.loads(out.read_text()) == [{"a": 1}]
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_csv_cells_hold_lists_as_json(tmp_path: Path) -> None:
    out = tmp_path / "o.csv"
    write_records(out, "csv", [{"a": ["x", "y"], "b": None, "c": True}], header=["a", "b", "c"])
    assert read_output(out) == [{"a": '["x", "y"]', "b": "", "c": "true"}]


async def test_csv_output_defuses_spreadsheet_formulas_but_keeps_numbers(tmp_path: Path) -> None:
    """A cell a spreadsheet would run as a formula gets a leading quote, in CSV only."""
    answers = {
        "a": '=HYPERLINK("http://evil","x")',
        "b": "+1+cmd",
        "c": "-2",
        "d": "@SUM(A1)",
        "e": "\t=1+1",
        "f": "plain",
    }
    rows = [{"q": key, "note": "=1+1" if key == "a" else "-1.5"} for key in answers]
    csv_out, jsonl_out = tmp_path / "out.csv", tmp_path / "out.jsonl"
    async with ScriptedOpenAIServer(responder=lambda body: answers[last_user(body)]) as llm:
        for out in (csv_out, jsonl_out):
            await run_batch(
                rows,
                template="{q}",
                providers=[f"openai:{llm.base_url}"],
                output=str(out),
                db=str(tmp_path / f"{out.suffix}.db"),
                settings=batch_settings(tmp_path),
                no_log=True,
            )
    records = read_output(csv_out)
    assert [r["response"] for r in records] == [
        '\'=HYPERLINK("http://evil","x")',
        "'+1+cmd",
        "-2",
        "'@SUM(A1)",
        "'\t=1+1",
        "plain",
    ]
    assert [r["note"] for r in records] == ["'=1+1"] + ["-1.5"] * 5
    assert [r["response"] for r in read_output(jsonl_out)] == list(answers.values())


async def test_csv_header_holds_keys_first_seen_in_later_rows_and_extra_cells(
    tmp_path: Path,
) -> None:
    """Output is regenerated from the store, so the header is collected from every row first:
    nothing is dropped (it used to be ``extrasaction="ignore"`` over the first row's keys)."""
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text('{"q": "a"}\n{"q": "b", "late": 7, "status": "input"}\n')
    csv_in = tmp_path / "in.csv"
    csv_in.write_text("q\na\nb,spill,over\n")
    for source in (jsonl, csv_in):
        out = tmp_path / f"out-{source.suffix[1:]}.csv"
        result = await run_batch(
            source,
            template="{q}",
            providers=["scripted"],
            output=str(out),
            db=str(tmp_path / "b.db"),
            settings=batch_settings(tmp_path),
            no_log=True,
            force=True,
        )
        assert result.ok
        header = out.read_text(encoding="utf-8").splitlines()[0].split(",")
        records = read_output(out)
        if source is jsonl:
            assert header[:2] == ["q", "late"]
            assert header.count("status") == 1
            assert [r["late"] for r in records] == ["", "7"]
            assert [r["status"] for r in records] == ["done", "done"]
        else:
            assert header[:2] == ["q", "_extra"]
            assert records[1]["_extra"] == '["spill", "over"]'
