"""Configuration: file + environment, unknown keys named, secrets never printed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kryten_llm.cli import main
from kryten_llm.config import load_settings, redacted
from kryten_llm.errors import ConfigError
from tests.conftest import write_json

ROOT = Path(__file__).resolve().parent.parent


def test_example_config_is_valid_and_shows_every_key() -> None:
    """config.example.json loads, and spells out every key of every section."""
    settings = load_settings(ROOT / "config.example.json")
    example = json.loads((ROOT / "config.example.json").read_text())
    assert set(example) == set(type(settings).model_fields)
    for name, value in example.items():
        section = getattr(settings, name)
        if name == "personalities":
            assert len(value) >= 2  # shows how several are kept, one active
            for persona in value.values():
                assert set(persona) == set(type(settings.personality).model_fields)
        elif isinstance(value, dict):
            assert set(value) == set(type(section).model_fields), name
    provider = next(iter(example["llm"]["providers"].values()))
    assert set(provider) >= {"type", "base_url", "model"}
    word = example["triggers"]["words"][0]
    assert set(word) == set(type(settings.triggers.words[0]).model_fields)


def test_unknown_keys_are_errors_that_name_their_path_and_a_suggestion(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "config.json",
        {"ratelimit": {"user_per_hourr": 3}, "channels": [{"chanel": "x"}]},
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    problems = {where: fix for where, _, fix in info.value.problems}
    assert "did you mean 'user_per_hour'" in problems["ratelimit.user_per_hourr"]
    assert "did you mean 'channel'" in problems["channels.0.chanel"]
    assert "channels.0.channel" in problems  # and the required key it lacks


def test_environment_overrides_the_file_per_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KRYTEN_LLM_<SECTION>__<KEY> wins over the file for that key only."""
    path = write_json(
        tmp_path / "config.json", {"ratelimit": {"global_per_minute": 3, "user_per_hour": 4}}
    )
    monkeypatch.setenv("KRYTEN_LLM_RATELIMIT__USER_PER_HOUR", "9")
    monkeypatch.setenv("KRYTEN_LLM_NATS__SERVERS", '["nats://10.0.0.1:4222"]')
    settings = load_settings(path)
    assert settings.ratelimit.global_per_minute == 3
    assert settings.ratelimit.user_per_hour == 9
    assert settings.nats.servers == ["nats://10.0.0.1:4222"]


def test_default_provider_must_exist(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "config.json",
        {"llm": {"providers": {"a": {"model": "m"}}, "default_provider": "b"}},
    )
    with pytest.raises(ConfigError, match="default_provider 'b' is not one of the providers"):
        load_settings(path)


def test_invalid_json_is_reported_with_its_position(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"nats": {"servers": [}')
    with pytest.raises(ConfigError, match=r"not valid JSON: .* line 1 column"):
        load_settings(path)


def test_redacted_settings_hide_every_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_KEY", "sk-live-123")
    path = write_json(
        tmp_path / "config.json",
        {
            "nats": {"password": "hunter2", "user": "bot"},
            "llm": {
                "providers": {
                    "a": {"model": "m", "api_key_env": "MY_KEY", "headers": {"X-Key": "hdr-9"}},
                    "b": {"model": "m", "api_key": "sk-inline-456"},
                },
                "default_provider": "a",
            },
        },
    )
    text = json.dumps(redacted(load_settings(path)))
    for secret in ("sk-live-123", "sk-inline-456", "hunter2", "hdr-9"):
        assert secret not in text


def test_validate_config_prints_a_redacted_summary_and_exits_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OR_KEY", "sk-or-secret")
    path = write_json(
        tmp_path / "config.json",
        {
            "llm": {
                "providers": {"cloud": {"model": "x/y", "api_key_env": "OR_KEY"}},
                "default_provider": "cloud",
            }
        },
    )
    assert main(["--config", str(path), "--validate-config"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("configuration OK")
    assert "cloud (default): openai x/y" in out
    assert "key set" in out
    assert "sk-or-secret" not in out


def test_validate_config_lists_every_error_with_a_fix_and_exits_nonzero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_json(
        tmp_path / "config.json", {"ratelimit": {"global_per_minute": 0}, "sevice": {}}
    )
    assert main(["--config", str(path), "--validate-config"]) == 2
    err = capsys.readouterr().err
    assert "ratelimit.global_per_minute: Input should be greater than or equal to 1" in err
    assert "KRYTEN_LLM_RATELIMIT__GLOBAL_PER_MINUTE" in err
    assert "sevice: unknown key" in err
    assert "did you mean 'service'" in err


def test_a_missing_api_key_environment_variable_is_a_startup_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NOT_SET_KEY", raising=False)
    path = write_json(
        tmp_path / "config.json",
        {
            "llm": {
                "providers": {"cloud": {"model": "m", "api_key_env": "NOT_SET_KEY"}},
                "default_provider": "cloud",
            }
        },
    )
    assert main(["--config", str(path), "--validate-config"]) == 2
    err = capsys.readouterr().err
    assert "llm.providers.cloud.api_key_env" in err
    assert "export NOT_SET_KEY=" in err


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kryten_llm", "--validate-config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout


@pytest.mark.parametrize(
    ("section", "path"),
    [
        pytest.param(
            {"filters": {"bot_name_patterns": ["("]}},
            "filters.bot_name_patterns",
            id="bot-name-pattern",
        ),
        pytest.param({"validation": {"blocklist": ["["]}}, "validation.blocklist", id="blocklist"),
        pytest.param(
            {"triggers": {"words": [{"name": "w", "patterns": ["(x"], "regex": True}]}},
            "triggers.words.0",
            id="trigger-regex",
        ),
    ],
)
def test_invalid_regexes_are_config_errors(section: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, **section)
    ((where, message, _),) = info.value.problems
    assert where == path
    assert "is not a valid regex" in message


def test_a_trigger_naming_an_unknown_provider_is_an_error() -> None:
    words = [{"name": "trivia", "patterns": ["trivia"], "providers": ["nope"]}]
    with pytest.raises(ConfigError, match=r"providers \['nope'\] are not in llm.providers"):
        load_settings(None, triggers={"words": words})
