"""Headline-batch users: a prompt file edited between runs, one JSON file per item, LM Studio.

The fixtures are what such scripts bring: a headline list with ids, a prompt file the user
edits between two runs, and two fake OpenAI-compatible "LM Studio" servers on 127.0.0.1 with
two loaded models each. Every run is the CLI in a process of its own.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from kryten_llm.batch.promptfile import prompt_hash
from kryten_llm.batch.store import RunStore
from tests.batch_helpers import (
    HEADLINES,
    GatedLMStudio,
    asked,
    cli,
    lm_studio,
    start_cli,
    write_config,
    write_headlines,
)

PROMPT_V1 = "Name the topic of this headline in one word: {title}"
PROMPT_V2 = "Is this headline good news or bad news? {title}"


def item(tmp: Path, item_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((tmp / "items" / f"{item_id}.json").read_text())
    return data


async def test_item_files_keep_each_models_answer_to_each_prompt_version(tmp_path: Path) -> None:
    """Model A, then model B, then an edited prompt: every file holds three answers, keyed by
    model name and prompt hash; a re-run asks nothing; deleting one file asks that item."""
    write_headlines(tmp_path)
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(PROMPT_V1)
    config = write_config(tmp_path)
    async with lm_studio("model-a", "model-b") as server:
        common = ["headlines.csv", "--prompt-file", "prompt.txt", "--config", str(config)]
        common += ["--output-dir", "items", "--id-column", "id", "-q"]
        common += ["--provider", f"openai:{server.base_url}"]
        for model in ("model-a", "model-b"):
            result = await cli(*common, "--model", model, cwd=tmp_path)
            assert result.code == 0, result.stderr
        prompt.write_text(PROMPT_V2)  # the user edits the prompt between runs
        result = await cli(*common, "--model", "model-a", cwd=tmp_path)
        assert result.code == 0, result.stderr
        assert len(server.completions) == 9

        v1, v2 = prompt_hash(PROMPT_V1), prompt_hash(PROMPT_V2)
        for item_id, title in HEADLINES:
            data = item(tmp_path, item_id)
            assert (data["id"], data["title"]) == (item_id, title)
            answers = {
                (model, digest): answer["response"]
                for model, by_prompt in data["llm_models"].items()
                for digest, answer in by_prompt.items()
            }
            assert answers == {
                ("model-a", v1): f"model-a: {PROMPT_V1.format(title=title)}",
                ("model-b", v1): f"model-b: {PROMPT_V1.format(title=title)}",
                ("model-a", v2): f"model-a: {PROMPT_V2.format(title=title)}",
            }
        # Every prompt version used is archived under its hash beside the store.
        assert (tmp_path / "prompts" / f"{v1}.txt").read_text() == PROMPT_V1
        assert (tmp_path / "prompts" / f"{v2}.txt").read_text() == PROMPT_V2

        again = await cli(*common, "--model", "model-a", cwd=tmp_path)
        assert again.code == 0, again.stderr
        assert len(server.completions) == 9  # every item already answered: nothing asked

        (tmp_path / "items" / "h2.json").unlink()
        result = await cli(*common, "--model", "model-a", cwd=tmp_path)
        assert result.code == 0, result.stderr
        assert asked(server)[9:] == [("model-a", PROMPT_V2.format(title=HEADLINES[1][1]))]
    assert set(item(tmp_path, "h2")["llm_models"]) == {"model-a"}


async def test_the_run_records_the_prompt_it_used_and_resumes_with_it(tmp_path: Path) -> None:
    write_headlines(tmp_path)
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(PROMPT_V1)
    config = write_config(tmp_path)
    async with lm_studio("model-a") as server:
        common = ["--config", str(config), "-q", "--provider", f"openai:{server.base_url}"]
        result = await cli(
            "headlines.csv", "--prompt-file", "prompt.txt", "--batch-id", "r1", *common,
            "--limit", "1", cwd=tmp_path,
        )  # fmt: skip
        assert result.code == 0, result.stderr
        prompt.write_text(PROMPT_V2)
        with RunStore(tmp_path / "batch.db") as store:
            config_of_run = store.run("r1").config
        assert config_of_run["prompt_sha"] == prompt_hash(PROMPT_V1)
        assert config_of_run["template"] == PROMPT_V1
        assert config_of_run["prompt_file"] == str(prompt)  # absolute: resumable from anywhere
    assert asked(server) == [("model-a", PROMPT_V1.format(title=HEADLINES[0][1]))]


async def test_model_all_asks_every_model_each_server_has_loaded(tmp_path: Path) -> None:
    write_headlines(tmp_path)
    (tmp_path / "prompt.txt").write_text(PROMPT_V1)
    config = write_config(tmp_path)
    async with lm_studio("a-small", "a-large") as one, lm_studio("b-small", "b-large") as two:
        result = await cli(
            "headlines.csv", "--prompt-file", "prompt.txt", "--config", str(config),
            "--output-dir", "items", "--id-column", "id", "-q",
            "--provider", f"openai:{one.base_url}", "--provider", f"openai:{two.base_url}",
            "--model", "all", cwd=tmp_path,
        )  # fmt: skip
        assert result.code == 0, result.stderr
        assert sorted(model for model, _ in asked(one)) == ["a-large"] * 3 + ["a-small"] * 3
        assert sorted(model for model, _ in asked(two)) == ["b-large"] * 3 + ["b-small"] * 3
    for item_id, _ in HEADLINES:
        models = item(tmp_path, item_id)["llm_models"]
        assert set(models) == {"a-small", "a-large", "b-small", "b-large"}


async def test_two_runs_merging_into_the_same_item_files_lose_nothing(tmp_path: Path) -> None:
    """Two processes at once, another model each, the same files: every answer is kept. The
    server holds model A's answers until model B's first request: the runs overlap."""
    rows = [(f"n{i}", f"Headline number {i}") for i in range(30)]
    write_headlines(tmp_path, rows)
    (tmp_path / "prompt.txt").write_text(PROMPT_V1)
    config = write_config(tmp_path)
    async with GatedLMStudio("model-a", "model-b", held="model-a") as server:

        def args(model: str) -> list[str]:
            return [
                "headlines.csv", "--prompt-file", "prompt.txt", "--config", str(config),
                "--output-dir", "items", "--id-column", "id", "-q", "--db", f"{model}.db",
                "--provider", f"openai:{server.base_url}", "--model", model,
                "--concurrency", "4",
            ]  # fmt: skip

        first = await start_cli(*args("model-a"), cwd=tmp_path)
        second = await start_cli(*args("model-b"), cwd=tmp_path)
        codes = await asyncio.wait_for(asyncio.gather(first.wait(), second.wait()), 60)
        assert codes == [0, 0]
    first_b = server.asked.index("model-b")
    assert "model-a" in server.asked[first_b:]  # model A was still asking: the runs overlapped
    for item_id, _ in rows:
        assert set(item(tmp_path, item_id)["llm_models"]) == {"model-a", "model-b"}


async def test_a_seeded_sample_asks_the_same_n_items(tmp_path: Path) -> None:
    rows = [(f"s{i}", f"Sample headline {i}") for i in range(40)]
    write_headlines(tmp_path, rows)
    config = write_config(tmp_path)
    async with lm_studio("model-a") as server:
        picked = []
        for folder in ("one", "two"):
            result = await cli(
                "headlines.csv", "--template", "{title}", "--config", str(config), "-q",
                "--provider", f"openai:{server.base_url}", "--output-dir", folder,
                "--id-column", "id", "--sample", "5", "--seed", "7", cwd=tmp_path,
            )  # fmt: skip
            assert result.code == 0, result.stderr
            picked.append(sorted(p.stem for p in (tmp_path / folder).glob("*.json")))
        other = await cli(
            "headlines.csv", "--template", "{title}", "--config", str(config), "-q",
            "--provider", f"openai:{server.base_url}", "--output-dir", "three",
            "--id-column", "id", "--sample", "5", "--seed", "8", cwd=tmp_path,
        )  # fmt: skip
        assert other.code == 0, other.stderr
    assert len(picked[0]) == 5
    assert picked[0] == picked[1]
    assert sorted(p.stem for p in (tmp_path / "three").glob("*.json")) != picked[0]
    assert len(server.completions) == 15


async def test_show_prints_the_raw_responses_beside_the_item_files(tmp_path: Path) -> None:
    write_headlines(tmp_path)
    config = write_config(tmp_path)
    async with lm_studio("model-a") as server:
        result = await cli(
            "headlines.csv", "--template", "Topic: {title}", "--config", str(config),
            "--provider", f"openai:{server.base_url}", "--output-dir", "items",
            "--id-column", "id", "--show", cwd=tmp_path,
        )  # fmt: skip
    assert result.code == 0, result.stderr
    for _, title in HEADLINES:
        assert f"model-a: Topic: {title}\n" in result.stdout
    assert len(list((tmp_path / "items").glob("*.json"))) == 3


async def test_an_id_that_cannot_name_a_file_fails_that_row_only(tmp_path: Path) -> None:
    write_headlines(tmp_path, [("ok1", "Fine"), ("../escape", "Bad id"), ("ok2", "Fine too")])
    config = write_config(tmp_path)
    async with lm_studio("model-a") as server:
        result = await cli(
            "headlines.csv", "--template", "{title}", "--config", str(config), "-q",
            "--provider", f"openai:{server.base_url}", "--output-dir", "items",
            "--id-column", "id", "--batch-id", "ids", cwd=tmp_path,
        )  # fmt: skip
        assert [text for _, text in asked(server)] == ["Fine", "Fine too"]
    assert result.code == 1  # some rows failed
    assert sorted(p.name for p in (tmp_path / "items").glob("*.json")) == ["ok1.json", "ok2.json"]
    failed = await cli("show", "ids", "--failed", cwd=tmp_path)
    assert "cannot name a file" in failed.stdout
    assert not (tmp_path / "escape.json").exists()
