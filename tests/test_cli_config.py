"""`plenary config` and what the command says about a bad settings file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from plenary.compose.cli import main
from plenary.settings import Settings, describe_settings, is_secret
from plenary.settings.base import fields_along


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("PLENARY_"):
            monkeypatch.delenv(name)


def test_config_defaults_prints_every_default_and_meaning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["config", "--defaults"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    for name, default, help_text in describe_settings():
        assert f"{name} = {default}\n    {help_text}\n" in out
    assert "captioner.port = 2700\n" in out


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
    assert f"file {bad}" in err


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


def settings_lines(out: str) -> dict[str, str]:
    """`name = value  (origin)` lines by name; the # header lines are left out."""
    lines = [line for line in out.splitlines() if line and not line.startswith(("#", " "))]
    return dict(line.split(" = ", 1) for line in lines)


def test_config_shows_each_value_in_effect_and_its_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "plenary.toml"
    path.write_text(
        'log_level = "ERROR"\n[captioner]\nport = 2800\n[models]\nen = "/srv/vosk/en"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("PLENARY_CAPTIONER__MAX_STREAMS", "3")
    monkeypatch.setenv("PLENARY_LOG_LEVEL", "warning")  # beats the file
    assert main(["--config", str(path), "config"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    shown = settings_lines(out)
    assert shown["captioner.port"] == f"2800  (file {path})"
    assert shown["captioner.max_streams"] == "3  (environment PLENARY_CAPTIONER__MAX_STREAMS)"
    assert shown["log_level"] == "WARNING  (environment PLENARY_LOG_LEVEL)"
    assert shown["models"] == f"{{'en': '/srv/vosk/en'}}  (file {path})"
    assert shown["captioner.host"] == "127.0.0.1  (default)"
    assert shown["orchestrator.admin_token"] == '""  (default)'
    # Every setting is listed (irc.networks.NAME.* and irc.rooms[].* once there are entries).
    names = {name for name, _, _ in describe_settings() if "NAME" not in name and "[]" not in name}
    assert names == set(shown)


def test_config_file_from_plenary_config_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "from-env.toml"
    path.write_text("[orchestrator]\nport = 8099\n", encoding="utf-8")
    monkeypatch.setenv("PLENARY_CONFIG", str(path))
    assert main(["config"]) == 0
    assert settings_lines(capsys.readouterr().out)["orchestrator.port"] == f"8099  (file {path})"


def test_config_verbose_prints_the_meaning_beneath(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "-v"]) == 0
    out = capsys.readouterr().out
    assert "captioner.port = 2700  (default)\n    Port of the captioner's websockets.\n" in out


# A Fernet key (urlsafe base64 of 32 bytes) that is also easy to search for.
FERNET = "c2VjcmV0LWtleS1zZWNyZXQta2V5LXNlY3JldC1rZXk="


def test_config_never_prints_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "plenary.toml"
    path.write_text(
        f'[orchestrator]\nadmin_token = "file-admin-token"\nsecret_key = "{FERNET}"\n'
        '[captioner]\norchestrator_token = "file-producer-token"\n'
        '[captions]\nproducer_token = "file-producer-token-2"\n'
        'jigasi_secret = "file-jigasi-secret"\n'
        '[captions.producers]\ncaptioner-1 = "file-captioner-token"\n'
        '[captions.service_readers]\nirc-relay = "file-reader-token"\n'
        '[ldap]\nbind_password = "file-ldap-password"\n'
        '[irc.networks.default]\npassword = "file-server-password"\n'
        'sasl_password = "file-sasl-password"\noper_password = "file-oper-password"\n'
        '[[irc.rooms]]\nroom = "keynote"\nchannel = "#keynote"\nkey = "file-channel-key"\n',
        encoding="utf-8",
    )
    environment = {
        "PLENARY_CAPTIONER__ACCESS_TOKEN": "env-access-token",
        "PLENARY_CAPTIONS__EVENT_SYNC_SECRET": "env-event-secret",
        "PLENARY_CAPTIONS__PRODUCERS__CAPTIONER-2": "env-captioner-token",
        "PLENARY_IRC__ORCHESTRATOR_TOKEN": "env-relay-token",
        "PLENARY_JITSI__APP_SECRET": "env-jitsi-secret",
        "PLENARY_WIKI__CLIENT_SECRET": "env-wiki-secret",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    for argv in (["config"], ["config", "-v"], ["config", "--defaults"]):
        assert main(["--config", str(path), *argv]) == 0
        out, err = capsys.readouterr()
        for secret in ["file-", "env-", FERNET[:20]]:
            assert secret not in out + err
    assert main(["--config", str(path), "config"]) == 0
    shown = settings_lines(capsys.readouterr().out)
    for name in [
        "orchestrator.admin_token",
        "orchestrator.secret_key",
        "captioner.orchestrator_token",
        "captions.producer_token",
        "captions.jigasi_secret",
        "ldap.bind_password",
        "irc.networks.default.password",
        "irc.networks.default.sasl_password",
        "irc.networks.default.oper_password",
        "irc.rooms[0].key",
    ]:
        assert shown[name] == f"<set>  (file {path})", name
    for variable in environment:
        if "PRODUCERS" not in variable:
            name = variable.removeprefix("PLENARY_").lower().replace("__", ".")
            assert shown[name] == f"<set>  (environment {variable})", name
    assert shown["captions.producers"] == (
        "{'captioner-1': '<set>', 'captioner-2': '<set>'}  "
        f"(environment PLENARY_CAPTIONS__PRODUCERS__CAPTIONER-2 and file {path})"
    )
    assert shown["captions.service_readers"] == f"{{'irc-relay': '<set>'}}  (file {path})"


def test_every_token_password_and_key_is_a_secret() -> None:
    """A new credential setting must be typed Secret, or `plenary config` would print it."""
    suspect = re.compile(r"(token|password|secret|_key|\.key|producers|service_readers)$")
    names = [name for name, _, _ in describe_settings() if suspect.search(name)]
    assert len(names) == 17
    for name in names:
        key = name.replace("[]", ".0").split(".")
        assert any(is_secret(field) for field in fields_along(Settings, key)), name


def test_bad_secret_is_named_but_not_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PLENARY_ORCHESTRATOR__SECRET_KEY", "not-a-fernet-key-hunter2")
    assert main(["config"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "orchestrator.secret_key" in err and "PLENARY_ORCHESTRATOR__SECRET_KEY" in err
    assert "hunter2" not in err


def test_the_installed_command(tmp_path: Path) -> None:
    """`python -m plenary.compose.cli`, as the `plenary` script runs it, in a clean process."""
    path = tmp_path / "plenary.toml"
    path.write_text('[jitsi]\napp_secret = "hunter2"\ndomain = "meet.example.net"\n')
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PLENARY_")}
    run = subprocess.run(
        [sys.executable, "-m", "plenary.compose.cli", "--config", str(path), "config"],
        env={**environment, "PLENARY_CAPTIONER__PORT": "2702"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    shown = settings_lines(run.stdout)
    assert shown["jitsi.domain"] == f"meet.example.net  (file {path})"
    assert shown["jitsi.app_secret"] == f"<set>  (file {path})"
    assert shown["captioner.port"] == "2702  (environment PLENARY_CAPTIONER__PORT)"
    assert "hunter2" not in run.stdout + run.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "plenary.compose.cli", "--config", str(path), "config"],
        env={**environment, "PLENARY_CAPTIONER__PORT": "0"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith("plenary: invalid setting captioner.port = '0'")
    assert "PLENARY_CAPTIONER__PORT" in bad.stderr
