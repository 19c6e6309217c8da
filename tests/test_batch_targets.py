"""``--provider`` / ``--model`` of a batch resolved to targets, through the shared spec parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from kryten_llm.batch import run_batch
from kryten_llm.batch.targets import resolve_targets
from kryten_llm.errors import ConfigError
from tests.batch_helpers import batch_settings


def test_a_local_spec_names_the_model_file(tmp_path: Path) -> None:
    """``local:/x.gguf`` loads that file (it used to land in base_url, and the bundled model
    answered instead)."""
    llm, targets = resolve_targets(batch_settings(tmp_path), ["local:/models/x.gguf"], [])
    config = llm.providers[targets[0].chain[0]]
    assert (config.type, config.model_path) == ("local", Path("/models/x.gguf"))


def test_a_model_per_inline_spec_keeps_both_targets(tmp_path: Path) -> None:
    spec = "openai:http://127.0.0.1:9/v1"
    llm, targets = resolve_targets(batch_settings(tmp_path), [spec, spec], ["m1", "m2"])
    assert [t.label for t in targets] == [f"{spec}/m1", f"{spec}/m2"]
    assert [llm.providers[t.chain[0]].model for t in targets] == ["m1", "m2"]
    assert llm.providers[targets[0].chain[0]].base_url == "http://127.0.0.1:9/v1"


def test_inline_specs_without_a_model_do_not_send_auto(tmp_path: Path) -> None:
    """Batch does not probe the server, so "auto" would reach it as a model name."""
    llm, targets = resolve_targets(batch_settings(tmp_path), ["openai:http://h/v1"], [])
    assert llm.providers[targets[0].chain[0]].model == "default"


async def test_scripted_wordlist_suffix_is_honoured(tmp_path: Path) -> None:
    result = await run_batch(
        ["topic one"],
        providers=["scripted:wordlist", "scripted:echo"],
        settings=batch_settings(tmp_path),
        db=str(tmp_path / "b.db"),
        no_log=True,
    )
    answers = {r["model"]: r["response"] for r in result.records()}
    assert answers["scripted:echo/echo"] == "You said: topic one"
    assert not answers["scripted:wordlist/wordlist"].startswith("You said")


def test_an_unknown_provider_lists_the_configured_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_targets(batch_settings(tmp_path), ["nope"], [])
    assert "echo" in str(caught.value)
