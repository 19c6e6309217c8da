"""``--provider`` / ``--model`` of a batch resolved to targets, through the shared spec parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from kryten_llm.batch import run_batch
from kryten_llm.batch.targets import resolve_targets
from kryten_llm.errors import ConfigError
from tests.batch_helpers import batch_settings
from tests.openai_server import ScriptedOpenAIServer


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


async def test_inline_specs_without_a_model_ask_the_server_which_it_serves(
    tmp_path: Path,
) -> None:
    """The model "auto" is the first one the server lists; it is never sent as a name."""
    async with ScriptedOpenAIServer(models=("loaded-1", "loaded-2")) as llm:
        result = await run_batch(
            ["hello"],
            providers=[f"openai:{llm.base_url}"],
            settings=batch_settings(tmp_path),
            db=str(tmp_path / "b.db"),
            no_log=True,
        )
    assert result.ok
    assert [r.json["model"] for r in llm.completions if r.json] == ["loaded-1"]
    assert [r["model"] for r in result.records()] == [f"openai:{llm.base_url}/loaded-1"]


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
