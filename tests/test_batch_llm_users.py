"""``llm batch`` users: answers on screen, show/logs, config defaults, prices, keys, Python API.

The examples are those such users bring: ``llm batch questions.txt`` shows the answers,
``llm logs -n 10`` reads them back, defaults live in the config, ``batch_process(model,
prompts, concurrency=3, rate_limit=20)`` returns (prompt, response) pairs with
``response.text()``, ``--estimate-cost`` prices known models, and a bad key stops the run
before it starts.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from pathlib import Path
from typing import Any

from kryten_llm.batch import batch_from_csv, batch_process
from tests.batch_helpers import (
    FAST_RETRY,
    SlowEchoServer,
    asked,
    batch_settings,
    cli,
    lm_studio,
    read_output,
    start_cli,
    write_config,
)
from tests.openai_server import ScriptedOpenAIServer, reply, status

QUESTIONS = ["What is a B-movie?", "Who directed Eraserhead?", "Name a cult film"]


def questions(tmp: Path, lines: list[str] = QUESTIONS) -> Path:
    path = tmp / "questions.txt"
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def config_with(tmp: Path, batch: dict[str, Any], **llm: Any) -> Path:
    path = tmp / "config.json"
    data = {
        "llm": {"retry": FAST_RETRY} | llm,
        "logging": {"response_log_dir": "logs"},
        "batch": batch,
    }
    path.write_text(json.dumps(data))
    return path


async def test_answers_are_printed_as_they_complete_even_into_a_pipe(tmp_path: Path) -> None:
    questions(tmp_path)
    config = write_config(tmp_path)
    async with SlowEchoServer(latency=0.05) as llm:
        process = await start_cli(
            "questions.txt", "--config", str(config), "--provider", f"openai:{llm.base_url}",
            "--concurrency", "1", "--rate-limit", "1", "--rate-window", "1", cwd=tmp_path,
        )  # fmt: skip
        assert process.stdout is not None
        heading = await asyncio.wait_for(process.stdout.readline(), 20)
        first = (await process.stdout.readline()) + (await process.stdout.readline())
        still_running = process.returncode is None  # the later rows are paced a second apart
        rest, _ = await asyncio.wait_for(process.communicate(), 20)
    assert still_running
    assert heading.decode().startswith("## row 0 · openai:")
    assert first.decode() == f"> {QUESTIONS[0]}\nYou said: {QUESTIONS[0]}\n"
    for question in QUESTIONS[1:]:
        assert f"> {question}\nYou said: {question}\n" in rest.decode()
    assert process.returncode == 0


async def test_quiet_hides_the_answers_and_the_store_still_has_them(tmp_path: Path) -> None:
    questions(tmp_path)
    result = await cli(
        "questions.txt", "--provider", "scripted:echo", "--quiet", "--batch-id", "q", cwd=tmp_path
    )
    assert result.code == 0, result.stderr
    assert result.stdout == ""
    shown = await cli("show", "q", cwd=tmp_path)
    for question in QUESTIONS:
        assert f"> {question}\nYou said: {question}\n" in shown.stdout


async def test_show_and_logs_read_answers_back_with_n_failed_search_and_model(
    tmp_path: Path,
) -> None:
    questions(tmp_path)
    config = write_config(tmp_path)
    async with ScriptedOpenAIServer(
        reply("a B-movie is cheap"), status(400), reply("cult: The Room"), models=("film-bot",)
    ) as llm:
        first = await cli(
            "questions.txt", "--config", str(config), "--provider", f"openai:{llm.base_url}",
            "--concurrency", "1", "--batch-id", "one", "-q", cwd=tmp_path,
        )  # fmt: skip
    assert first.code == 1  # one row failed
    second = await cli(
        "questions.txt", "--provider", "scripted:echo", "--batch-id", "two", "-q", cwd=tmp_path
    )
    assert second.code == 0, second.stderr

    two = await cli("show", "one", "-n", "2", cwd=tmp_path)
    assert two.stdout.count("## row") == 2
    assert "a B-movie is cheap" in two.stdout
    failed = await cli("show", "one", "--failed", "--json", cwd=tmp_path)
    [item] = json.loads(failed.stdout)
    assert item["prompt"] == QUESTIONS[1]
    assert "400" in item["error"]

    recent = await cli("logs", "-n", "2", "--json", cwd=tmp_path)
    assert [(i["batch_id"], i["row"]) for i in json.loads(recent.stdout)] == [
        ("two", 1),
        ("two", 2),
    ]
    found = await cli("logs", "--search", "the room", "--json", cwd=tmp_path)
    assert [i["response"] for i in json.loads(found.stdout)] == ["cult: The Room"]
    by_model = await cli("logs", "--model", "film-bot", "--json", cwd=tmp_path)
    assert {i["batch_id"] for i in json.loads(by_model.stdout)} == {"one"}
    assert len(json.loads(by_model.stdout)) == 3


async def test_config_defaults_apply_and_flags_override_them(tmp_path: Path) -> None:
    questions(tmp_path, ["one"])
    config = config_with(tmp_path, {"model": "from-config", "format": "csv", "concurrency": 2})
    async with lm_studio("from-config", "from-flag") as llm:
        spec = f"openai:{llm.base_url}"
        default = await cli(
            "questions.txt", "--config", str(config), "--provider", spec, "-o", "out.dat",
            cwd=tmp_path,
        )  # fmt: skip
        flagged = await cli(
            "questions.txt", "--config", str(config), "--provider", spec, "--model", "from-flag",
            "--format", "jsonl", "-o", "out2.dat", cwd=tmp_path,
        )  # fmt: skip
        assert (default.code, flagged.code) == (0, 0), default.stderr + flagged.stderr
        assert [model for model, _ in asked(llm)] == ["from-config", "from-flag"]
    assert (tmp_path / "out.dat").read_text().startswith("prompt,row,model,")  # csv
    assert json.loads((tmp_path / "out2.dat").read_text())["model"] == f"{spec}/from-flag"


async def test_a_per_model_rate_limit_from_the_config_paces_that_model(tmp_path: Path) -> None:
    questions(tmp_path, [f"q{i}" for i in range(4)])
    config = config_with(tmp_path, {"rate_limits": {"paced": 2}})
    async with lm_studio("paced") as llm:
        result = await cli(
            "questions.txt", "--config", str(config), "--provider", f"openai:{llm.base_url}",
            "--model", "paced", "--rate-window", "0.6", "--concurrency", "4", "-q", cwd=tmp_path,
        )  # fmt: skip
        arrivals = [r.received_at for r in llm.completions]
    assert result.code == 0, result.stderr
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert len(gaps) == 3
    assert min(gaps) >= 0.25  # 2 per 0.6 s, evenly spaced: 0.3 s apart


async def test_estimate_cost_prices_known_models_and_config_prices(tmp_path: Path) -> None:
    questions(tmp_path)
    config = config_with(tmp_path, {"prices": {"house-model": {"input": 100, "output": 200}}})
    async with lm_studio("gpt-4o-mini", "house-model", "unknown-model") as llm:
        costs = {}
        for model in ("gpt-4o-mini", "house-model", "unknown-model"):
            result = await cli(
                "questions.txt", "--config", str(config), "--provider", f"openai:{llm.base_url}",
                "--model", model, "--estimate-cost", "--max-tokens", "100", cwd=tmp_path,
                stdin="n\n",
            )  # fmt: skip
            assert result.code == 0, result.stderr
            assert "not started" in result.stderr
            line = next(x for x in result.stderr.splitlines() if x.strip().startswith("openai:"))
            found = re.search(r"cost \$([\d.]+) \.\. \$([\d.]+)", line)
            costs[model] = None if found is None else float(found.group(2))
        assert llm.completions == []  # an estimate sends no prompt
    # 3 rows x 100 answer tokens at most, plus the prompts: gpt-4o-mini at $0.15 / $0.60.
    assert costs["gpt-4o-mini"] is not None
    assert 3 * 100 * 0.60 / 1e6 < costs["gpt-4o-mini"] < 0.001
    assert costs["house-model"] is not None
    assert costs["house-model"] > 3 * 100 * 200 / 1e6
    assert costs["unknown-model"] is None  # "no price configured"


async def test_a_refused_key_stops_the_run_before_any_prompt_naming_the_variable(
    tmp_path: Path,
) -> None:
    questions(tmp_path)
    async with ScriptedOpenAIServer() as llm:
        llm.push_models(status(401))
        result = await cli(
            "questions.txt", "--provider", f"openai:{llm.base_url}", "--model", "m",
            "--batch-id", "k", cwd=tmp_path,
        )  # fmt: skip
        assert llm.completions == []
    assert result.code == 2
    assert "refused the key" in result.stderr
    assert "export OPENAI_API_KEY=" in result.stderr
    listed = await cli("list", "--json", cwd=tmp_path)
    assert json.loads(listed.stdout) == []  # nothing was started


async def test_inline_specs_send_the_key_of_api_key_env_or_the_family_variable(
    tmp_path: Path,
) -> None:
    questions(tmp_path, ["hi"])
    async with lm_studio("m") as llm:
        spec = ["--provider", f"openai:{llm.base_url}", "-q"]
        family = await cli(
            "questions.txt", *spec, cwd=tmp_path, env={"OPENAI_API_KEY": "sk-family"}
        )
        named = await cli(
            "questions.txt", *spec, "--api-key-env", "MY_LM_KEY", cwd=tmp_path,
            env={"MY_LM_KEY": "sk-named", "OPENAI_API_KEY": "sk-family"},
        )  # fmt: skip
        assert (family.code, named.code) == (0, 0), family.stderr + named.stderr
        keys = [r.headers.get("Authorization") for r in llm.requests]
    # Each run: one listing (model auto), one prompt; the second reuses the stored answer.
    assert keys == ["Bearer sk-family", "Bearer sk-family", "Bearer sk-named"]


async def test_batch_process_returns_prompt_and_response_pairs(tmp_path: Path) -> None:
    settings = batch_settings(tmp_path)
    async with lm_studio("m1") as llm:
        results = await asyncio.to_thread(
            batch_process,
            f"openai:{llm.base_url}",
            ["first", "second"],
            concurrency=3,
            rate_limit=20,
            settings=settings,
            db=str(tmp_path / "api.db"),
        )
    pairs = [(prompt, response.text()) for prompt, response in results]
    assert pairs == [("first", "m1: first"), ("second", "m1: second")]
    assert all(response.ok for _, response in results)
    assert results.result.ok


async def test_batch_from_csv_with_template_and_output(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("title,year\nPlan 9,1957\nEraserhead,1977\n")
    settings = batch_settings(tmp_path)
    async with lm_studio("m1") as llm:
        results = await asyncio.to_thread(
            batch_from_csv,
            f"openai:{llm.base_url}",
            data,
            template="Review {title} ({year})",
            output=tmp_path / "out.jsonl",
            rate_limit=30,
            settings=settings,
            db=str(tmp_path / "api.db"),
        )
    assert [(p, r.text()) for p, r in results] == [
        ("Review Plan 9 (1957)", "m1: Review Plan 9 (1957)"),
        ("Review Eraserhead (1977)", "m1: Review Eraserhead (1977)"),
    ]
    assert [r["response"] for r in read_output(tmp_path / "out.jsonl")] == [
        "m1: Review Plan 9 (1957)",
        "m1: Review Eraserhead (1977)",
    ]
