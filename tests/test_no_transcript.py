"""'No transcript' means nothing kept: a room without transcript_retention_days, through
the real API, leaves none of its words in the SQLite file, its WAL or its shared memory
(PostgreSQL: the database's files and the write-ahead log after a checkpoint), no caption
rows and no transcript; a room changed keep → none (PATCH or PUT) stops
recording with the next caption, and none → keep records from then on."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from bench.harness.postgres import PostgresServer
from bench.harness.rooms_helpers import AUTH as ADMIN_AUTH
from bench.harness.rooms_helpers import TOKEN as ADMIN
from bench.harness.rooms_helpers import room_json
from orchestrator.app import create_app
from plenary.settings import load_settings
from tests.captions_helpers import make_room, patch_room

PRODUCER = "producer-token-0123456789"
CAPTION_TABLES = ("caption_sessions", "caption_events", "caption_corrections")
AUTH = {"Authorization": f"Bearer {PRODUCER}"}


@pytest.fixture
async def client(aiohttp_client: Any, database_url: str) -> Any:
    """The app on a new database of each backend in turn (tests/pg_fixtures.py)."""
    settings = load_settings(
        orchestrator={"database_url": database_url, "admin_token": ADMIN},
        captions={"producers": {"cap": PRODUCER}},
    )
    return await aiohttp_client(create_app(settings))


class OnDisk:
    """What the database keeps, read as another process would: the SQLite file (its WAL
    and shared memory), or the PostgreSQL server's files."""

    def __init__(self, url: str, server: PostgresServer | None) -> None:
        self.url, self.server = make_url(url), server

    def bytes(self) -> bytes:
        if self.server is None:
            return database_bytes(Path(self.url.database or ""))
        return self.server.stored_bytes(self.url.database or "")

    def rows(self, room: str) -> dict[str, int]:
        """The room's rows in each caption table."""
        if self.server is None:
            return caption_rows(Path(self.url.database or ""), room)
        return {
            table: int(self.server.psql(f"SELECT count(*) FROM {table} WHERE room = '{room}'",
                                        self.url.database or ""))
            for table in CAPTION_TABLES
        }  # fmt: skip


@pytest.fixture
def on_disk(database_url: str, request: pytest.FixtureRequest) -> OnDisk:
    postgres = database_url.startswith("postgresql")
    return OnDisk(database_url, request.getfixturevalue("pg_server") if postgres else None)


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


def caption_rows(path: Path, room: str) -> dict[str, int]:
    """The room's rows in each caption table, read from the file as another process would."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return {
            t: conn.execute(f"SELECT count(*) FROM {t} WHERE room = ?", (room,)).fetchone()[0]
            for t in CAPTION_TABLES
        }


async def put_room(client: Any, slug: str, **over: Any) -> None:
    """Replace the room over ``PUT /api/v1/rooms/<slug>`` (every field but the name)."""
    fields = room_json(slug, **over)
    del fields["slug"]
    response = await client.put(f"/api/v1/rooms/{slug}", json=fields, headers=ADMIN_AUTH)
    assert response.status == 200, await response.text()


async def exports(client: Any, pid: str) -> str:
    """Every export of transcript ``pid``, joined: text, JSON, WebVTT, SRT and the page."""
    parts = []
    for suffix in (".txt", ".json", ".vtt", ".srt", ""):
        response = await client.get(f"/pid/{pid}{suffix}")
        assert response.status == 200, (suffix, await response.text())
        parts.append(await response.text())
    return "\n".join(parts)


async def sse_texts(client: Any, room: str, count: int) -> list[str]:
    got: list[str] = []
    async with client.get(f"/r/{room}/captions/stream?after=0") as stream:
        while len(got) < count:
            line = (await asyncio.wait_for(stream.content.readline(), 10)).decode()
            if line.startswith("data: "):
                got.append(json.loads(line[6:])["text"])
    return got


async def test_a_room_without_transcript_keeps_nothing_on_disk(
    client: Any, on_disk: OnDisk
) -> None:
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
    raw = on_disk.bytes()
    assert all(t.encode() in raw for t in kept), "the control room's captions are not on disk"
    # … and not one of the quiet room's.
    found = [t for t in quiet if t.encode() in raw]
    assert found == []
    assert on_disk.rows("quiet") == {
        "caption_sessions": 0, "caption_events": 0, "caption_corrections": 0,
    }  # fmt: skip
    assert on_disk.rows("kept")["caption_events"] == 3

    # Transcripts are refused with the same sentence the room page says.
    transcripts = await client.get("/r/quiet/transcripts")
    assert transcripts.status == 404
    assert "not recorded and no transcript is kept" in await transcripts.text()
    room_page = await (await client.get("/r/quiet")).text()
    assert "not recorded and no transcript is kept" in room_page


async def test_recording_turned_on_later_does_not_reveal_what_was_said(
    client: Any, on_disk: OnDisk
) -> None:
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
    raw = on_disk.bytes()
    assert not any(t.encode() in raw for t in before)

    # Off again: from now on nothing is kept; the earlier transcript stays until retention.
    await patch_room(client, "later", transcript_retention_days=None)
    again = texts("again", 2)
    await post(client, "later", again)
    raw = on_disk.bytes()
    assert not any(t.encode() in raw for t in again)
    assert (await client.get(f"/pid/{pid}.txt")).status == 200


async def test_keep_then_none_then_keep_through_patch_and_put(client: Any, on_disk: OnDisk) -> None:
    await make_room(client, "switch", transcript_retention_days=30)
    kept, dropped, again, dropped_too = (texts(w, 4) for w in ("kept", "drop", "again3", "drop2"))

    # keep: recorded, in a transcript with every export.
    await post(client, "switch", kept)
    poll = await (await client.get("/api/v1/rooms/switch/captions?after=0")).json()
    pid = poll["events"][0]["session"]
    assert pid and all(e["session"] == pid for e in poll["events"])
    transcript = await exports(client, pid)
    assert all(t in transcript for t in kept)

    # keep → none (PATCH null): the next captions are live only.
    room = await patch_room(client, "switch", transcript_retention_days=None)
    assert room["transcript_retention_days"] is None
    await post(client, "switch", dropped)
    poll = await (await client.get("/api/v1/rooms/switch/captions?after=4")).json()
    assert [(e["text"], e["session"]) for e in poll["events"]] == [(t, "") for t in dropped]
    transcript = await exports(client, pid)
    assert not any(t in transcript for t in dropped)
    assert not any(t.encode() in on_disk.bytes() for t in dropped)
    assert on_disk.rows("switch")["caption_events"] == len(kept)
    listing = await (await client.get("/r/switch/transcripts")).text()
    assert "not recorded and no transcript is kept" in listing and pid in listing

    # none → keep (PUT with a retention): recorded again from the next caption on.
    await put_room(client, "switch", transcript_retention_days=5)
    await post(client, "switch", again)
    poll = await (await client.get("/api/v1/rooms/switch/captions?after=0")).json()
    assert [e["text"] for e in poll["events"]] == kept + again  # the live-only ones: gone
    stored = await exports(client, poll["events"][-1]["session"])
    assert all(t in stored for t in again) and not any(t in stored for t in dropped)
    assert all(t.encode() in on_disk.bytes() for t in again)
    assert on_disk.rows("switch")["caption_events"] == len(kept) + len(again)

    # keep → none (PUT null): nothing more on disk.
    await put_room(client, "switch", transcript_retention_days=None)
    await post(client, "switch", dropped_too)
    raw = on_disk.bytes()
    assert not any(t.encode() in raw for t in dropped + dropped_too)
    assert on_disk.rows("switch")["caption_events"] == len(kept) + len(again)
