"""The ``random`` provider: offline, seeded, topic-flavoured list items with a controlled share
of exact and near duplicates; configured in a file or inline as ``--provider random[:SEED]``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from kryten_llm.config import ProviderConfig, load_settings
from kryten_llm.errors import ConfigError
from kryten_llm.explore.producer import ProducerConfig, build_messages
from kryten_llm.llm import RandomProvider, create_provider
from kryten_llm.llm.base import ChatMessage, CompletionRequest
from kryten_llm.llm.specs import parse_provider_spec
from kryten_llm.pools import normalize
from tests.explore_helpers import assert_counts_add_up, read_run

TOPIC = "haunted lighthouses of the north"


def list_request(count: int, topic: str = TOPIC) -> CompletionRequest:
    return CompletionRequest(messages=build_messages(ProducerConfig(topic, batch=count), ""))


def classify(lines: list[str]) -> tuple[int, int, int]:
    """(fresh, exact, near) by construction: an exact duplicate normalises to an earlier line;
    a near one is an earlier line with "the " in front or a plural ending."""
    seen: set[str] = set()
    fresh = exact = near = 0
    for line in lines:
        key = normalize(line)
        bases = {key.removeprefix("the "), key.removesuffix("es"), key.removesuffix("s")}
        if key in seen:
            exact += 1
        elif bases & seen:
            near += 1
        else:
            fresh += 1
        seen.add(key)
    return fresh, exact, near


async def answer_lines(provider: RandomProvider, requests: int, count: int) -> list[str]:
    lines: list[str] = []
    for _ in range(requests):
        lines += (await provider.complete(list_request(count))).text.splitlines()
    return lines


def provider(session: aiohttp.ClientSession, **values: object) -> RandomProvider:
    made = create_provider("dice", ProviderConfig(type="random", model="random", **values), session)
    assert isinstance(made, RandomProvider)
    return made


async def test_the_same_seed_gives_the_same_answers_and_another_seed_others(
    session: aiohttp.ClientSession,
) -> None:
    first = await answer_lines(provider(session, seed=3), 3, 20)
    again = await answer_lines(provider(session, seed=3), 3, 20)
    other = await answer_lines(provider(session, seed=4), 3, 20)
    assert len(first) == 60
    assert first == again
    assert first != other


@pytest.mark.parametrize(("exact_share", "near_share"), [(0.2, 0.1), (0.5, 0.0), (0.0, 0.4)])
async def test_duplicates_come_in_the_configured_shares(
    session: aiohttp.ClientSession, exact_share: float, near_share: float
) -> None:
    dice = provider(session, seed=11, duplicate_share=exact_share, near_duplicate_share=near_share)
    lines = await answer_lines(dice, 40, 50)
    fresh, exact, near = classify(lines)
    total = len(lines)
    assert total == 2000
    assert abs(exact / total - exact_share) < 0.03, (exact, near)
    assert abs(near / total - near_share) < 0.03, (exact, near)
    assert fresh > 0


async def test_items_are_flavoured_by_the_topic_and_the_count_asked_for(
    session: aiohttp.ClientSession,
) -> None:
    dice = provider(session, seed=5, duplicate_share=0, near_duplicate_share=0)
    lines = (await dice.complete(list_request(30))).text.splitlines()
    assert len(lines) == 30
    topical = [
        line for line in lines if {"haunted", "lighthouses", "north"} & set(normalize(line).split())
    ]
    assert len(topical) >= 15, lines
    assert not any("Topic" in line for line in lines)


async def test_a_chat_message_gets_one_line(session: aiohttp.ClientSession) -> None:
    dice = provider(session, seed=1)
    request = CompletionRequest(messages=(ChatMessage("user", "bob: what about zombie films?"),))
    completion = await dice.complete(request)
    assert len(completion.text.splitlines()) == 1
    assert completion.provider == "dice"
    assert completion.model == "random"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0


def test_inline_specs_take_a_seed_and_refuse_anything_else() -> None:
    kind, config = parse_provider_spec("random:42")
    assert (kind, config.type, config.model, config.seed) == ("random", "random", "random", 42)
    assert parse_provider_spec("random")[1].seed is None
    with pytest.raises(ConfigError, match="is not a seed"):
        parse_provider_spec("random:many")


def test_shares_over_one_are_a_config_error_naming_the_provider(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    dice = {"type": "random", "duplicate_share": 0.7, "near_duplicate_share": 0.5}
    path.write_text(json.dumps({"llm": {"providers": {"dice": dice}, "default_provider": "dice"}}))
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    where, message, _fix = caught.value.problems[0]
    assert "llm.providers.dice" in where
    assert "duplicate_share + near_duplicate_share" in message


def test_explore_with_the_random_provider_counts_its_duplicates(tmp_path: Path) -> None:
    """The command line run a demo would use: no key, no network, duplicates found and
    counted, the same output for the same seed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KRYTEN_LLM_")}
    outputs = []
    for folder in ("a", "b"):
        result = subprocess.run(
            [sys.executable, "-m", "kryten_llm.explore", "--topic", TOPIC, "--provider",
             "random:9", "--producers", "1", "--iterations", "5", "--output", folder,
             "--progress", "off"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        items, lines, metadata = read_run(tmp_path / folder)
        assert_counts_add_up(metadata, len(items))
        assert metadata["counts"]["received"] == 100
        assert metadata["counts"]["exact_duplicates"] > 0
        assert metadata["counts"]["near_duplicates"] > 0
        assert metadata["providers"]["random-1"]["type"] == "random"
        outputs.append(lines)
    assert outputs[0] == outputs[1]
