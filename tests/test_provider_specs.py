"""The shared parser of inline ``--provider`` specs (``TYPE[:WHERE]``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kryten_llm.errors import ConfigError
from kryten_llm.llm import base
from kryten_llm.llm.specs import parse_provider_spec


def test_openai_url_is_the_base_url_and_the_model_is_auto() -> None:
    kind, config = parse_provider_spec("openai:http://127.0.0.1:8080/v1")
    assert kind == "openai"
    assert (config.type, config.base_url, config.model) == (
        "openai",
        "http://127.0.0.1:8080/v1",
        "auto",
    )


def test_anthropic_url_takes_the_model_and_key_variable_given() -> None:
    _, config = parse_provider_spec(
        "anthropic:https://api.example.test", model="claude-x", api_key_env="MY_KEY"
    )
    assert (config.type, config.base_url, config.model, config.api_key_env) == (
        "anthropic",
        "https://api.example.test",
        "claude-x",
        "MY_KEY",
    )


def test_local_path_is_the_model_file_not_a_url() -> None:
    kind, config = parse_provider_spec("local:/models/x.gguf")
    assert kind == "local"
    assert config.model_path == Path("/models/x.gguf")
    assert config.model == "local"
    assert config.base_url == "http://127.0.0.1:8080/v1"  # untouched default


@pytest.mark.parametrize(
    ("spec", "model"),
    [
        pytest.param("scripted", "wordlist", id="bare->wordlist"),
        pytest.param("scripted:wordlist", "wordlist", id="wordlist"),
        pytest.param("scripted:echo", "echo", id="echo"),
    ],
)
def test_scripted_modes(spec: str, model: str) -> None:
    assert parse_provider_spec(spec)[1].model == model


def test_the_scripted_mode_of_the_spec_wins_over_the_model() -> None:
    assert parse_provider_spec("scripted:echo", model="other")[1].model == "echo"


def test_a_bare_type_has_that_types_defaults() -> None:
    _, config = parse_provider_spec("openai")
    assert config.base_url == "http://127.0.0.1:8080/v1"


def test_default_model_replaces_the_explorer_defaults() -> None:
    assert parse_provider_spec("openai:http://h/v1", default_model="default")[1].model == "default"
    assert parse_provider_spec("scripted", default_model="default")[1].model == "default"


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        pytest.param("nope:http://h", "'nope' is not a provider type", id="unknown-type"),
        pytest.param("openai:", "nothing after the ':'", id="empty-where"),
        pytest.param("scripted:wordlsit", "unknown scripted mode", id="scripted-typo"),
    ],
)
def test_bad_specs_are_config_errors(spec: str, said: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_provider_spec(spec)
    assert said in str(caught.value)


def test_invalid_values_become_config_errors_naming_the_spec(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A registered plugin type the configuration does not accept is a ConfigError too."""
    monkeypatch.setitem(base._REGISTRY, "plugin", base._REGISTRY["scripted"])
    with pytest.raises(ConfigError) as caught:
        parse_provider_spec("plugin:somewhere")
    assert "--provider plugin:somewhere" in str(caught.value)
