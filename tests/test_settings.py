"""Settings: defaults, the TOML file, PLENARY_* environment variables, errors that name the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import BaseModel

from plenary.settings import (
    CaptionerSettings,
    ConfigError,
    IrcNetworkSettings,
    IrcRoomSettings,
    Settings,
    describe_settings,
    load_settings,
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see only the PLENARY_* variables they set themselves."""
    for name in list(os.environ):
        if name.upper().startswith("PLENARY_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plenary.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    settings = load_settings()
    c = settings.captioner
    assert (c.host, c.port) == ("127.0.0.1", 2700)  # vosk-server's port
    assert c.threads == 0
    assert c.max_streams == 200
    assert c.max_frame_bytes == 4 * 1024 * 1024
    assert c.idle_timeout == 3600.0
    assert c.default_sample_rate == 16000  # not vosk-server's 8000 trap
    assert (c.default_language, c.default_room) == ("ko", "default")
    assert c.vad_aggressiveness == 3
    assert settings.log_level == "INFO"
    assert settings.models == {}
    assert settings.speech_dir.name == "speech"


def test_toml_file_values(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'log_level = "debug"\n'
        'speech_dir = "/data/speech"\n'
        "[models]\n"
        'en = "/srv/vosk/en-us-0.22"\n'
        "[captioner]\n"
        "port = 2800\n"
        "idle_timeout = 5.5\n"
        'default_room = "hall"\n',
    )
    settings = load_settings(path)
    assert settings.log_level == "DEBUG"
    assert settings.speech_dir == Path("/data/speech")
    assert settings.models == {"en": Path("/srv/vosk/en-us-0.22")}
    assert settings.captioner.port == 2800
    assert settings.captioner.idle_timeout == 5.5
    assert settings.captioner.default_room == "hall"
    assert settings.captioner.max_streams == 200  # untouched keys keep their default


def test_config_file_from_plenary_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "[captioner]\nport = 2801\n")
    monkeypatch.setenv("PLENARY_CONFIG", str(path))
    assert load_settings().captioner.port == 2801


def test_environment_beats_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, 'log_level = "ERROR"\n[captioner]\nport = 2800\nidle_timeout = 5\n')
    monkeypatch.setenv("PLENARY_CAPTIONER__PORT", "2701")
    monkeypatch.setenv("PLENARY_LOG_LEVEL", "warning")
    settings = load_settings(path)
    assert settings.captioner.port == 2701
    assert settings.log_level == "WARNING"
    # The variable overrides one key; the file's other keys in that table stay.
    assert settings.captioner.idle_timeout == 5.0


def test_environment_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLENARY_CAPTIONER__MAX_STREAMS", "3")
    assert load_settings().captioner.max_streams == 3


def test_keyword_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "[captioner]\nport = 2800\n")
    settings = load_settings(path, captioner={"max_streams": 2})
    assert settings.captioner.max_streams == 2


@pytest.mark.parametrize(
    ("toml", "key", "value"),
    [
        ("[captioner]\nport = 70000\n", "captioner.port", "70000"),
        ("[captioner]\nport = 0\n", "captioner.port", "0"),
        ("[captioner]\nvad_aggressiveness = 7\n", "captioner.vad_aggressiveness", "7"),
        ('[captioner]\nport = "many"\n', "captioner.port", "many"),
        ("[captioner]\nidle_timeout = 0\n", "captioner.idle_timeout", "0"),
        ("[captioner]\ndefault_sample_rate = 4000\n", "captioner.default_sample_rate", "4000"),
        ('log_level = "LOUD"\n', "log_level", "LOUD"),
        ("captioner = 5\n", "captioner", "5"),
    ],
)
def test_bad_value_names_key_and_value(tmp_path: Path, toml: str, key: str, value: str) -> None:
    path = write(tmp_path, toml)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert key in message
    assert value in message
    assert str(path) in message


@pytest.mark.parametrize(
    ("toml", "key"),
    [("[captioner]\nprot = 2700\n", "captioner.prot"), ("colour = 1\n", "colour")],
)
def test_unknown_key_is_named(tmp_path: Path, toml: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, toml))
    assert "unknown setting" in str(info.value)
    assert repr(key) in str(info.value)


def test_bad_environment_value_names_the_variable_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLENARY_CAPTIONER__PORT", "70000")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "captioner.port" in str(info.value)
    assert "70000" in str(info.value)
    assert "environment" in str(info.value)


def test_invalid_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "[captioner\nport = 2700\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert "not valid TOML" in str(info.value)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert "cannot read config file" in str(info.value)
    assert str(path) in str(info.value)
    assert "No such file" in str(info.value)


def _leaf_names(model: type[BaseModel], prefix: str = "") -> set[str]:
    names = set()
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            names |= _leaf_names(field.annotation, f"{prefix}{name}.")
        else:
            names.add(prefix + name)
    return names


def _entry_names() -> set[str]:
    """The keys of each [irc.networks.NAME] table and [[irc.rooms]] entry."""
    return _leaf_names(IrcNetworkSettings, "irc.networks.NAME.") | _leaf_names(
        IrcRoomSettings, "irc.rooms[]."
    )


def test_describe_settings_lists_every_field_with_help() -> None:
    rows = describe_settings()
    names = [name for name, _, _ in rows]
    assert len(names) == len(set(names))
    assert set(names) == _leaf_names(Settings) | _entry_names()
    assert {f"captioner.{n}" for n in CaptionerSettings.model_fields} <= set(names)
    for name, default, help_text in rows:
        assert help_text.strip(), f"{name} has no help text"
        assert isinstance(default, str)
    by_name = {name: default for name, default, _ in rows}
    assert by_name["captioner.port"] == "2700"
    assert by_name["log_level"] == "INFO"
    assert by_name["speech_dir"] == "../shared/speech"  # relative, not this machine's path


def test_nested_environment_variable_for_a_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLENARY_MODELS__EN", "/srv/vosk/en")
    assert load_settings().models == {"en": Path("/srv/vosk/en")}


def test_unknown_nested_environment_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLENARY_CAPTIONER__PROT", "2701")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "'captioner.prot'" in str(info.value)


@pytest.mark.parametrize(
    ("name", "value"), [("PLENARY_CAPTIONER", "port=1"), ("PLENARY_MODELS", "x")]
)
def test_table_environment_variable_that_is_not_json(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert name.removeprefix("PLENARY_").lower() in str(info.value)


def test_config_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('default_room = "salle é"\n'.encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(path) in str(info.value)


def test_misspelled_top_level_environment_variable_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PLENARY_LOGLEVEL", "DEBUG")
    with pytest.raises(ConfigError, match="PLENARY_LOGLEVEL"):
        load_settings()


def test_readme_rows_match_the_code() -> None:
    """Each setting's README row holds its default and its meaning exactly as the code."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    stale = [
        name
        for name, default, help_text in describe_settings()
        if f"| `{name}` | `{default}` | {help_text} |\n" not in readme
    ]
    assert not stale


def test_speech_dir_defaults_to_the_shared_folder_beside_the_checkout() -> None:
    checkout = Path(__file__).resolve().parent.parent
    assert load_settings().speech_dir == checkout.parent / "shared" / "speech"


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLENARY_CAPTIONER__PORT", "70000")
    with pytest.raises(ConfigError, match="PLENARY_CAPTIONER__PORT"):
        load_settings()


def test_bad_value_names_the_file_not_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[orchestrator]\nport = 0\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert f"file {path}" in str(info.value)
    assert "PLENARY_" not in str(info.value)


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[orchestrator]\nsecret_key = "hunter2-hunter2"\n', "orchestrator.secret_key"),
        # Errors of a whole table (its input holds every key) must not print it either.
        ('[wiki]\nenabled = true\nclient_secret = "hunter2-hunter2"\n', "wiki"),
        (
            '[irc.networks.a]\npassword = "hunter2-hunter2"\n'
            '[[irc.rooms]]\nroom = "r"\nchannel = "#r"\nnetwork = "b"\n',
            "irc",
        ),
    ],
)
def test_errors_never_print_a_secret(tmp_path: Path, toml: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, toml))
    assert key in str(info.value)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("url", ["events.example.org", "ftp://events.example.org", "https://"])
def test_public_url_must_be_http(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError, match="orchestrator.public_url"):
        load_settings(write(tmp_path, f'[orchestrator]\npublic_url = "{url}"\n'))


def test_base_urls_lose_their_trailing_slash(tmp_path: Path) -> None:
    settings = load_settings(
        write(
            tmp_path,
            '[orchestrator]\npublic_url = "https://events.example.org/"\n'
            '[captioner]\norchestrator_url = "http://10.0.0.5:8090/"\n'
            '[wiki]\nurl = "https://wiki.example.org/"\n',
        )
    )
    assert settings.orchestrator.public_url == "https://events.example.org"
    assert settings.captioner.orchestrator_url == "http://10.0.0.5:8090"
    assert settings.wiki.url == "https://wiki.example.org"
    assert settings.irc.transcript_url == "https://events.example.org/r/{room}/transcripts"
