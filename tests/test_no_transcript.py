"""'No transcript' means nothing kept: a room without transcript_retention_days, through
the real API, leaves none of its words in the SQLite file, its WAL or its shared memory."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from bench.harness.rooms_helpers import TOKEN as ADMIN
from orchestrator.app import create_app
from orchestrator.keys import settings_key
from plenary.settings import load_settings
from tests.captions_helpers import make_room, patch_room

PRODUCER = "producer-token-0123456789"
AUTH = {"Authorization": f"Bearer {PRODUCER}"}


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> Any:
    settings = load_settings(
        orchestrator={"database": tmp_path / "quiet.sqlite3", "admin_token": ADMIN},
        captions={"producers": {"cap": PRODUCER}},
    )
    return await aiohttp_client(create_app(settings))


def texts(room: str, count: int) -> list[str]:
    # Distinct words that appear nowhere else (not in a room name or a template).
    return [f"{room}비밀{n:03d}zq{n * 7919:06d}" for n in range(count)]


async def post(client: Any, room: str, lines: list[str]) -> None:
    stamp = time.time_ns()
    events = [{"id": f"{stamp}-{n}", "room": room, "speaker": "Kim", "language": "ko",
               "text": text, "end": 1.0} for n, text in enumerate(lines)]  # fmt: skip
    response = await client.post("/api/v1/captions", json={"events": events}, headers=AUTH)
    assert response.status == 200, await response.text()
    assert all(r["status"] == 200 for r in (await response.json())["accepted"])


def database_bytes(path: Path) -> bytes:
    """The database, its WAL and its shared memory, as they are on disk."""
    return b"".join(
        p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()
    )


async def sse_texts(client: Any, room: str, count: int) -> list[str]:
    got: list[str] = []
    async with client.get(f"/r/{room}/captions/stream?after=0") as stream:
        while len(got) < count:
            line = (await asyncio.wait_for(stream.content.readline(), 10)).decode()
            if line.startswith("data: "):
                got.append(json.loads(line[6:])["text"])
    return got


async def test_a_room_without_transcript_keeps_nothing_on_disk(client: Any) -> None:
    await make_room(client, "quiet", transcript_retention_days=None)
    await make_room(client, "kept", transcript_retention_days=30)  # the control
    quiet, kept = texts("quiet", 100), texts("kept", 3)
    await post(client, "quiet", quiet[:50])
    await post(client, "kept", kept)
    await post(client, "quiet", quiet[50:])

    # Live readers still get them all, in order, numbered: SSE, JSON poll, the page.
    assert await sse_texts(client, "quiet", 100) == quiet
    poll = await (await client.get("/api/v1/rooms/quiet/captions?after=0&limit=1000")).json()
    assert [e["text"] for e in poll["events"]] == quiet
    assert [e["seq"] for e in poll["events"]] == list(range(1, 101))
    assert all(e["session"] == "" for e in poll["events"])
    page = await (await client.get("/r/quiet/captions")).text()
    assert quiet[-1] in page and "not recorded and no transcript is kept" in page

    # On disk: the recording room's words are there (the search can find them) …
    path = Path(client.app[settings_key].orchestrator.database)
    raw = database_bytes(path)
    assert all(t.encode() in raw for t in kept), "the control room's captions are not on disk"
    # … and not one of the quiet room's.
    found = [t for t in quiet if t.encode() in raw]
    assert found == []

    # Transcripts are refused with the same sentence the room page says.
    transcripts = await client.get("/r/quiet/transcripts")
    assert transcripts.status == 404
    assert "not recorded and no transcript is kept" in await transcripts.text()
    room_page = await (await client.get("/r/quiet")).text()
    assert "not recorded and no transcript is kept" in room_page


async def test_recording_turned_on_later_does_not_reveal_what_was_said(client: Any) -> None:
    await make_room(client, "later", transcript_retention_days=None)
    before, after = texts("before", 5), texts("after", 3)
    await post(client, "later", before)
    await patch_room(client, "later", transcript_retention_days=7)
    page = await (await client.get("/r/later")).text()
    assert "the transcript is kept for 7 days" in page
    await post(client, "later", after)

    poll = await (await client.get("/api/v1/rooms/later/captions?after=0")).json()
    assert [e["text"] for e in poll["events"]] == after
    assert [e["seq"] for e in poll["events"]] == [6, 7, 8]  # numbering went on
    pid = poll["events"][0]["session"]
    transcript = await (await client.get(f"/pid/{pid}.txt")).text()
    assert all(t in transcript for t in after)
    assert not any(t in transcript for t in before)
    listing = await (await client.get("/r/later/transcripts")).text()
    assert pid in listing
    raw = database_bytes(Path(client.app[settings_key].orchestrator.database))
    assert not any(t.encode() in raw for t in before)

    # Off again: from now on nothing is kept; the earlier transcript stays until retention.
    await patch_room(client, "later", transcript_retention_days=None)
    again = texts("again", 2)
    await post(client, "later", again)
    raw = database_bytes(Path(client.app[settings_key].orchestrator.database))
    assert not any(t.encode() in raw for t in again)
    assert (await client.get(f"/pid/{pid}.txt")).status == 200
