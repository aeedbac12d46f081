"""plenary rooms create|list|show|delete on the same database as the app."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.harness.rooms_helpers import room_json
from orchestrator.app import create_app
from plenary.compose.cli import main
from plenary.settings import load_settings


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cli.sqlite3"
    monkeypatch.setenv("PLENARY_ORCHESTRATOR__DATABASE", str(path))
    return path


def test_create_list_show_delete(database: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["rooms", "create", "keynote", "--title", "Keynote", "--start", "2030-03-01T10:00",
            "--end", "2030-03-01T11:30", "--timezone", "Asia/Seoul", "--lang", "ko",
            "--lang", "en", "--anyone", "--irc-channel", "#keynote",
            "--retention-days", "7"]  # fmt: skip
    assert main(argv) == 0
    assert capsys.readouterr().out == "created keynote\n"
    assert main(["rooms", "list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("keynote\t2030-03-01T10:00+09:00\tko,en\tKeynote")
    assert main(["rooms", "show", "keynote"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["policy"]["access"] == [{"kind": "anyone"}]
    assert shown["schedule"]["timezone"] == "Asia/Seoul"
    assert shown["transcript_retention_days"] == 7
    assert main(argv) == 1
    assert "exists already" in capsys.readouterr().err
    assert main(["rooms", "delete", "keynote"]) == 0
    assert main(["rooms", "show", "keynote"]) == 1
    assert "no room named 'keynote'" in capsys.readouterr().err


def test_invalid_room_names_the_field(database: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["rooms", "create", "Bad Name", "--title", "x", "--start", "2030-03-01T10:00",
                 "--end", "2030-03-01T09:00"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "slug:" in err and "schedule" in err


async def test_json_file_and_the_api_see_the_same_rooms(
    database: Path, tmp_path: Path, aiohttp_client: Any
) -> None:
    spec = tmp_path / "room.json"
    spec.write_text(json.dumps(room_json("from-file")), encoding="utf-8")
    code = await asyncio.to_thread(main, ["rooms", "create", "--json", str(spec)])
    assert code == 0
    client = await aiohttp_client(create_app(load_settings()))
    rooms = await (await client.get("/api/v1/rooms")).json()
    assert [r["slug"] for r in rooms] == ["from-file"]


def test_caption_readers_and_no_transcript(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    devs = '{"access": [{"kind": "ldap_group", "group": "devs"}]}'
    argv = ["rooms", "create", "talk", "--title", "Talk", "--start", "2030-03-01T10:00",
            "--end", "2030-03-01T11:00", "--policy", devs, "--public-captions"]  # fmt: skip
    assert main(argv) == 0
    assert main(["rooms", "show", "talk"]) == 0
    shown = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert shown["caption_readers"] == [{"kind": "anyone"}]
    assert shown["transcript_retention_days"] is None  # omitted: no transcript recorded
    bad = ["rooms", "create", "odd", "--title", "Odd", "--start", "2030-03-01T10:00",
           "--end", "2030-03-01T11:00", "--caption-readers", '[{"kind": "nobody"}]']  # fmt: skip
    assert main(bad) == 2  # not a valid room
    assert "caption_readers" in capsys.readouterr().err


def listed(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The slugs `plenary rooms list` prints."""
    capsys.readouterr()
    assert main(["rooms", "list"]) == 0
    return [line.split("\t", 1)[0] for line in capsys.readouterr().out.splitlines()]


def test_json_document_on_the_command_line(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rooms", "create", "--json", json.dumps(room_json("inline"))]) == 0
    assert capsys.readouterr().out == "created inline\n"
    # A slug given too replaces the document's.
    assert main(["rooms", "create", "renamed", "--json", json.dumps(room_json("inline"))]) == 0
    assert main(["rooms", "show", "renamed"]) == 0
    shown = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert shown["title"] == "Keynote" and shown["irc_channel"] == "#keynote"
    assert listed(capsys) == ["inline", "renamed"]


def test_json_at_file(database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "room.json"
    spec.write_text(json.dumps(room_json("at-file")), encoding="utf-8")
    assert main(["rooms", "create", "--json", f"@{spec}"]) == 0
    assert listed(capsys) == ["at-file"]


@pytest.mark.parametrize("flag", ["@-", "-"])
def test_json_from_standard_input(database: Path, flag: str) -> None:
    """The real command in its own process, the room piped in."""
    run = subprocess.run(
        [sys.executable, "-m", "plenary.compose.cli", "rooms", "create", "--json", flag],
        input=json.dumps(room_json("piped")),
        capture_output=True,
        text=True,
        check=False,
    )
    assert (run.returncode, run.stdout, run.stderr) == (0, "created piped\n", "")
    rooms = subprocess.run(
        [sys.executable, "-m", "plenary.compose.cli", "rooms", "list"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert rooms.stdout.startswith("piped\t")


@pytest.mark.parametrize(
    ("spec", "stdin", "message"),
    [
        ('{"slug": "broken",', None, "--json is not valid JSON: Expecting property name"),
        (
            "slug=broken",
            None,
            "--json is not valid JSON: Expecting value at line 1 column 1; no file 'slug=broken'",
        ),
        ("[1, 2]", None, "--json: the room must be a JSON object, not an array"),
        ("@-", "{nope}", "standard input is not valid JSON"),
        ("@-", '"a room"', "standard input: the room must be a JSON object, not a string"),
        ("@{tmp}/missing.json", None, "cannot read {tmp}/missing.json: No such file"),
        ("@{tmp}/bad.json", None, "{tmp}/bad.json is not valid JSON: Expecting ',' delimiter"),
    ],
)
def test_bad_json_is_a_usage_error_and_creates_nothing(
    database: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    spec: str,
    stdin: str | None,
    message: str,
) -> None:
    (tmp_path / "bad.json").write_text('{"slug": "bad" "title": "x"}', encoding="utf-8")
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    assert main(["rooms", "create", "--json", spec.replace("{tmp}", str(tmp_path))]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("plenary rooms: ")
    assert message.replace("{tmp}", str(tmp_path)) in err
    assert not database.exists()  # nothing was opened, let alone created
    assert listed(capsys) == []


def test_bad_policy_json_is_named(database: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["rooms", "create", "talk", "--title", "Talk", "--start", "2030-03-01T10:00",
            "--end", "2030-03-01T11:00", "--policy", "{access: []}"]  # fmt: skip
    assert main(argv) == 2
    assert "--policy is not valid JSON" in capsys.readouterr().err
    assert listed(capsys) == []
