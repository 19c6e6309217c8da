"""Explore settings are checked in one place and fail in library terms: an
:class:`ExploreError` that names the setting, never a command-line flag."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from kryten_llm.config import LLMConfig, ProviderConfig
from kryten_llm.errors import ExploreError, KrytenLLMError
from kryten_llm.explore import Explorer, ExploreSettings
from kryten_llm.explore.dedup import DEFAULT_THRESHOLD
from kryten_llm.explore.output import Checkpoint
from kryten_llm.explore.settings import LIMITS, invalid_settings
from kryten_llm.llm import ProviderManager, build_manager


@pytest.fixture
async def manager() -> AsyncIterator[ProviderManager]:
    config = LLMConfig(
        providers={"words": ProviderConfig(type="scripted", model="wordlist")},
        default_provider="words",
    )
    async with aiohttp.ClientSession() as session:
        yield build_manager(config, session)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("similarity", 0.0, id="similarity-0"),
        pytest.param("similarity", 1.5, id="similarity-1.5"),
        pytest.param("producers", 0, id="no-producers"),
        pytest.param("batch", 501, id="batch-too-big"),
        pytest.param("checkpoint_seconds", 0.0, id="checkpoint-seconds-0"),
    ],
)
def test_a_bad_setting_is_an_explore_error_naming_the_setting(field: str, value: float) -> None:
    """The settings refuse a value out of its range with the field's name and rule."""
    with pytest.raises(ExploreError, match=field) as caught:
        ExploreSettings(topic="x", **{field: value})
    assert isinstance(caught.value, KrytenLLMError)
    assert "--" not in str(caught.value)
    assert LIMITS[field][0] in str(caught.value)


def test_the_limits_accept_the_defaults_and_no_limit() -> None:
    """Every default keeps its rule; ``None`` iterations or target mean "no limit"."""
    assert ExploreSettings(topic="x").similarity == DEFAULT_THRESHOLD
    assert invalid_settings({"iterations": None, "target": None, "similarity": 1.0}) == []
    assert invalid_settings({"similarity": 0, "unknown": -1}) == [("similarity", 0, "in (0, 1]")]


async def test_an_explorer_needs_providers_its_manager_has(manager: ProviderManager) -> None:
    """No provider, or one the manager lacks, is an ExploreError, not a ValueError."""
    settings = ExploreSettings(topic="x")
    with pytest.raises(ExploreError, match="at least one provider"):
        Explorer(settings, manager, [])
    with pytest.raises(ExploreError, match="nosuch"):
        Explorer(settings, manager, ["words", "nosuch"])


async def test_a_checkpoint_of_another_topic_is_refused_in_library_terms(
    manager: ProviderManager,
) -> None:
    """Resuming another topic names both topics and no flag."""
    explorer = Explorer(ExploreSettings(topic="films"), manager, ["words"])
    with pytest.raises(ExploreError, match="'books', not 'films'") as caught:
        explorer.resume_from(Checkpoint("books"))
    assert "--" not in str(caught.value)


async def test_producer_states_are_plain_strings_in_snapshots(manager: ProviderManager) -> None:
    """Producer states are an enum in code and their plain values in snapshots and files."""
    explorer = Explorer(ExploreSettings(topic="films", iterations=1), manager, ["words"])
    await explorer.run()
    states = [p["state"] for p in explorer.snapshot()["producers"]]
    assert states == ["done", "done"]
    assert all(type(state) is str for state in states)
