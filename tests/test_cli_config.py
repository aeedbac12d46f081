"""`plenary config` and what the command says about a bad settings file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from plenary.compose.cli import main
from plenary.settings import describe_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("PLENARY_"):
            monkeypatch.delenv(name)


def test_config_prints_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    for name, default, help_text in describe_settings():
        assert f"{name} = {default}\n    {help_text}\n" in out
    assert "captioner.port = 2700" in out


def test_bad_config_file_returns_2_and_names_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[captioner]\nport = 70000\n", encoding="utf-8")
    assert main(["--config", str(bad), "config"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("plenary: ")
    assert "captioner.port" in err
    assert "70000" in err


def test_unknown_key_in_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[captioner]\nvad_agressiveness = 2\n", encoding="utf-8")
    assert main(["--config", str(bad), "config"]) == 2
    assert "captioner.vad_agressiveness" in capsys.readouterr().err


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.toml"
    assert main(["--config", str(missing), "config"]) == 2
    assert str(missing) in capsys.readouterr().err


def test_bad_environment_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PLENARY_CAPTIONER__VAD_AGGRESSIVENESS", "7")
    assert main(["config"]) == 2
    err = capsys.readouterr().err
    assert "captioner.vad_aggressiveness" in err
    assert "7" in err


def test_no_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "usage: plenary" in capsys.readouterr().err


def test_table_environment_variable_that_is_not_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PLENARY_CAPTIONER", "port=1")
    assert main(["config"]) == 2
    assert "captioner" in capsys.readouterr().err
