"""plenary rooms create|list|show|delete on the same database as the app."""

from __future__ import annotations

import asyncio
import json
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
