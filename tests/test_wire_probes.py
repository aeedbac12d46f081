"""Issue 14's "one bad caption breaks a room" probes, through the running app.

Every producer input (``POST /api/v1/captions``, ``POST /api/v1/rooms/<room>/captions``,
Jigasi posts) follows one wire schema: lone surrogates, raw invalid UTF-8 and non-finite
numbers are a 400 naming the field, control characters are removed from caption text,
a timestamp far from server time is filed at arrival. And nothing already stored can
make a page or an export fail: the worst rows an older version could have left are
written straight into SQLite (the one place where that is the point) and every page
still answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bench.harness.rooms_helpers import AUTH as ADMIN_AUTH
from bench.harness.rooms_helpers import TOKEN as ADMIN
from bots.captioner.delivery import Delivery
from orchestrator.app import create_app
from orchestrator.captions import api as captions_api
from orchestrator.captions import captions_key
from orchestrator.captions.pid import new_pid
from plenary import wire
from plenary.events import CaptionEvent
from plenary.settings import load_settings
from tests.captions_helpers import make_room
from tests.fake_prosody import FakeProsody, Room

PRODUCER = {"Authorization": "Bearer cap-token"}
SECRET = "jigasi-secret"
JID = "keynote@conference.meet.example.org"
CT = {"Content-Type": "application/json"}
FAR_FUTURE = 10**18
EXPORTS = ("", ".txt", ".vtt", ".srt", ".json")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> Any:
    settings = load_settings(
        orchestrator={"database": tmp_path / "db.sqlite3", "admin_token": ADMIN},
        captions={
            "producers": {"cap": "cap-token"},
            "producer_token": "cap-token",
            "jigasi_secret": SECRET,
            "event_sync_secret": "prosody-secret",
        },
    )
    client = await aiohttp_client(create_app(settings))
    for slug in ("keynote", "old"):  # public rooms that record (transcript_retention_days)
        await make_room(client, slug, transcript_retention_days=30)
    return client


def batch_event(n: int, **over: Any) -> dict[str, Any]:
    return {"id": f"e-{n}-{time.time_ns()}", "room": "keynote", "speaker": "Kim",
            "language": "ko", "text": f"caption {n}", "is_final": True, "start": 1.0,
            "end": 2.5, "message_id": f"m{n}", "timestamp": now_ms(), **over}  # fmt: skip


def jigasi_speech(text: str = "hello", **over: Any) -> dict[str, Any]:
    return {"event": "SPEECH", "room_name": JID, "timestamp": now_ms(),
            "participant": {"id": "p1", "name": "Ana"},
            "transcript": [{"text": text, "confidence": 0.9}], "language": "en",
            "message_id": f"j-{time.time_ns()}", "is_interim": False, **over}  # fmt: skip


async def send(client: Any, how: str, body: bytes) -> aiohttp.ClientResponse:
    """POST a raw body the way each producer does."""
    if how == "batch":
        return await client.post("/api/v1/captions", data=body, headers={**PRODUCER, **CT})
    if how == "room":
        return await client.post(
            "/api/v1/rooms/keynote/captions", data=body, headers={**PRODUCER, **CT}
        )
    return await client.post(f"/api/v1/jigasi/{SECRET}", data=body, headers=CT)


def body_for(how: str, **over: Any) -> bytes:
    """One final caption as ``how`` posts it, with ``over`` in the event (in Jigasi's
    transcript alternative for ``text``)."""
    if how == "jigasi":
        text = over.pop("text", "hello")
        return json.dumps(jigasi_speech(text, **over)).encode()
    event = batch_event(1, **over)
    return json.dumps({"events": [event]} if how == "batch" else event).encode()


async def poll(client: Any, room: str = "keynote") -> list[dict[str, Any]]:
    data = await (await client.get(f"/api/v1/rooms/{room}/captions?after=0")).json()
    return list(data["events"])


async def assert_refused(response: aiohttp.ClientResponse, field: str) -> None:
    assert response.status == 400, await response.text()
    assert response.content_type == "application/problem+json"
    detail = (await response.json())["detail"]
    assert field in detail, detail


HOW = ("batch", "room", "jigasi")
FIELD = {"batch": "events[0].", "room": "events[0].", "jigasi": "transcript[0]."}


# ---- strings ------------------------------------------------------------------------


@pytest.mark.parametrize("how", HOW)
async def test_a_lone_surrogate_is_refused_naming_the_field(client: Any, how: str) -> None:
    response = await send(client, how, body_for(how, text="bad \ud800 text"))
    await assert_refused(response, FIELD[how] + "text")
    assert "surrogate" in (await response.json())["detail"]
    assert (await response.json())["errors"][0]["field"] == FIELD[how] + "text"
    # CESU-8: the surrogate's raw bytes, which json.loads(bytes) would have taken
    raw = body_for(how, text="cesu XSURX").replace(b"XSURX", b"\xed\xa0\x80")
    await assert_refused(await send(client, how, raw), "UTF-8")
    # and a speaker's name: the schema's rule, not a check of the text alone
    if how != "jigasi":
        await assert_refused(await send(client, how, body_for(how, speaker="\udc00")), "speaker")
    assert await poll(client) == []
    assert (await send(client, how, body_for(how, text="fine"))).status in (200, 202)
    assert [e["text"] for e in await poll(client)] == ["fine"]


async def test_a_lone_surrogate_in_a_partial_leaves_partial_readers_alone(client: Any) -> None:
    stream = await client.get("/r/keynote/captions/stream?partials=1&after=0")
    hub = client.app[captions_key].hub
    while hub.subscribers("keynote") == 0:
        await asyncio.sleep(0.01)
    bad = batch_event(1, id="", is_final=False, text="part \ud800")
    await assert_refused(
        await client.post("/api/v1/captions", json={"events": [bad]}, headers=PRODUCER),
        "events[0].text",
    )
    interim = jigasi_speech("part \ud800", is_interim=True)
    await assert_refused(
        await send(client, "jigasi", json.dumps(interim).encode()), "transcript[0].text"
    )
    good = [batch_event(2, id="", is_final=False, text="partial ok"), batch_event(3)]
    posted = await client.post("/api/v1/captions", json={"events": good}, headers=PRODUCER)
    assert posted.status == 200
    seen: list[str] = []
    while len(seen) < 2:  # the reader is still there and gets both
        line = (await asyncio.wait_for(stream.content.readline(), 5)).decode()
        if line.startswith("data: "):
            seen.append(json.loads(line[6:])["text"])
    assert seen == ["partial ok", "caption 3"]
    stream.close()


@pytest.mark.parametrize("how", HOW)
async def test_control_characters_never_reach_pages_or_exports(client: Any, how: str) -> None:
    dirty = "a\x00b\x01c\x7fd\x1b[31m\ne\tf"
    over: dict[str, Any] = {"text": dirty}
    if how != "jigasi":
        over["speaker"] = "Kim\x00\x01"
    response = await send(client, how, body_for(how, **over))
    assert response.status in (200, 202), await response.text()
    (event,) = await poll(client)
    assert event["text"] == "abcd[31m e\tf"  # removed; the line break became a space
    assert event["speaker"] in ("Kim", "Ana")
    urls = ["/r/keynote/captions", "/r/keynote/transcripts"]
    urls += [f"/pid/{event['session']}{ext}" for ext in EXPORTS]
    for url in urls:
        got = await client.get(url)
        assert got.status == 200, url
        body = await got.read()
        assert b"\x00" not in body and b"\x01" not in body and b"\x1b" not in body, url
        assert b"&#0;" not in body and b"\\u0000" not in body and b"\\u0001" not in body, url
    text = await client.get("/r/keynote/captions.txt?after=0")
    await text.content.readline()  # the greeting
    line = await asyncio.wait_for(text.content.readline(), 5)
    assert line.endswith(b"abcd[31m e f\n") and b"\x00" not in line
    text.close()


async def test_a_name_from_prosody_follows_the_same_rules(client: Any) -> None:
    """Speaker names also come from Prosody's occupant posts: a lone surrogate there is
    refused naming the field, and control characters never reach a reader."""
    prosody = FakeProsody(client, "prosody-secret")
    room = Room("keynote")
    assert (await prosody.room_created(room)).status == 202
    refused = await prosody.occupant_joined(room, "a1b2c3d4", {"id": "x", "name": "Bo\ud800"})
    await assert_refused(refused, "occupant.name")
    who = {"id": "x", "name": "Bo\x00\x01 Kim"}
    assert (await prosody.occupant_joined(room, "a1b2c3d4", who)).status == 202
    stream = await client.get("/r/keynote/captions/stream?partials=1&after=0")
    while client.app[captions_key].hub.subscribers("keynote") == 0:
        await asyncio.sleep(0.01)
    events = [batch_event(n, room="", meeting_id=room.meeting_id, endpoint="a1b2c3d4",
                          speaker="Speaker 1", is_final=n == 2) for n in (1, 2)]  # fmt: skip
    events[0]["id"] = ""
    posted = await client.post("/api/v1/captions", json={"events": events}, headers=PRODUCER)
    assert posted.status == 200, await posted.text()
    speakers = []
    while len(speakers) < 2:  # the partial and the final
        line = await asyncio.wait_for(stream.content.readline(), 5)
        if line.startswith(b"data: "):
            speakers.append(json.loads(line[6:])["speaker"])
    stream.close()
    assert speakers == ["Bo Kim", "Bo Kim"]


# ---- numbers ------------------------------------------------------------------------


@pytest.mark.parametrize("how", ("batch", "room"))
@pytest.mark.parametrize("number", (b"NaN", b"Infinity", b"-Infinity", b"1e400"))
async def test_a_number_that_is_not_finite_is_refused(client: Any, how: str, number: bytes) -> None:
    for field in ("start", "end"):
        raw = body_for(how, **{field: 123.25}).replace(b"123.25", number)
        response = await send(client, how, raw)
        await assert_refused(response, f"events[0].{field}")
        assert "finite" in (await response.json())["detail"]
    raw = body_for(how, timestamp=777000777000777).replace(b"777000777000777", number)
    await assert_refused(await send(client, how, raw), "events[0].timestamp")
    assert await poll(client) == []


async def test_a_jigasi_timestamp_that_is_not_finite_is_refused(client: Any) -> None:
    raw = body_for("jigasi", timestamp=777000777000777).replace(b"777000777000777", b"1e400")
    await assert_refused(await send(client, "jigasi", raw), "timestamp")
    assert await poll(client) == []


# ---- timestamps ---------------------------------------------------------------------


@pytest.mark.parametrize("how", HOW)
async def test_a_far_timestamp_is_filed_at_arrival_and_the_room_stays_sane(
    client: Any, how: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(captions_api, "_replaced_logged", {})
    caplog.set_level(logging.WARNING, logger="orchestrator.captions.api")
    before = now_ms()
    for stamp in (FAR_FUTURE, -5, 1):
        response = await send(client, how, body_for(how, text=f"at {stamp}", timestamp=stamp))
        assert response.status in (200, 202), await response.text()  # the caption is good
    later = await send(client, how, body_for(how, text="a normal one"))
    assert later.status in (200, 202)
    events = await poll(client)
    assert [e["text"] for e in events] == ["at 1000000000000000000", "at -5", "at 1",
                                           "a normal one"]  # fmt: skip
    assert all(before - 1000 <= e["at"] <= now_ms() + 1000 for e in events)
    assert len({e["session"] for e in events}) == 1  # one session, on today's clock
    warned = [r.getMessage() for r in caplog.records if "more than a day" in r.getMessage()]
    assert len(warned) == 1 and "1000000000000000000" in warned[0]  # once a minute
    for url in ("/r/keynote/captions", "/r/keynote/transcripts"):
        assert (await client.get(url)).status == 200, url
    text = await client.get("/r/keynote/captions.txt?after=0")
    lines = [await asyncio.wait_for(text.content.readline(), 5) for _ in range(5)]
    assert lines[-1].endswith(b"a normal one\n")
    text.close()
    vtt = await (await client.get(f"/pid/{events[0]['session']}.vtt")).text()
    assert "a normal one" in vtt and "\n99" not in vtt  # no cue a century long


async def test_jigasi_start_far_in_the_future_does_not_swallow_later_captions(
    client: Any,
) -> None:
    start = {"event": "START", "room_name": JID, "timestamp": FAR_FUTURE}
    assert (await send(client, "jigasi", json.dumps(start).encode())).status == 200
    assert (await send(client, "jigasi", body_for("jigasi", text="said"))).status == 200
    (event,) = await poll(client)
    sessions = await (await client.get("/r/keynote/transcripts")).text()
    assert event["session"] in sessions and "2100" not in sessions
    withdrawn = await client.delete(f"/api/v1/transcripts/{event['session']}", headers=ADMIN_AUTH)
    assert withdrawn.status == 204
    assert (await client.get("/r/keynote/transcripts")).status == 200
    assert (await send(client, "jigasi", body_for("jigasi", text="after"))).status == 200
    assert [e["text"] for e in await poll(client)] == ["after"]


# ---- what older versions left ---------------------------------------------------------


def store_worst_rows(database: Path) -> tuple[str, str]:
    """Rows an older version or a corrupted producer could have left in room ``old``:
    an open session whose last caption is in 10^18 ms, and one that began at +inf."""
    bad, worse = new_pid(), new_pid()
    conn = sqlite3.connect(database)
    with conn:
        conn.execute(
            "INSERT INTO caption_sessions (pid, room, started_at_ms, last_at_ms)"
            " VALUES (?, 'old', -5, ?)",
            (bad, FAR_FUTURE),
        )
        conn.execute(
            "INSERT INTO caption_sessions (pid, room, started_at_ms, last_at_ms, ended_at_ms)"
            " VALUES (?, 'old', 9e999, 'soon', -9e999)",
            (worse,),
        )
        (sid,) = conn.execute("SELECT id FROM caption_sessions WHERE pid = ?", (bad,)).fetchone()
        rows: list[tuple[int, object, object, bytes, bytes]] = [
            (1, FAR_FUTURE, 1500, b"Kim", b"far future"),
            (2, -5, -100, b"Kim", b"before 1970"),
            (3, "9e999", "9e999", b"Kim", b"infinite"),  # SQLite's +inf
            (4, "'soon'", "'NaN'", b"Kim", b"not numbers"),
            (5, 1, 10**15, b"Kim\x00\x01", b"nul\x00 and \x01 and \x1b[2J"),
            (6, 2, 10, b"L\xed\xa0\x80", b"lone\xed\xa0\x80\xff"),  # not UTF-8
            (7, 3, 10, b"", b""),
        ]
        for seq, at, duration, speaker, text in rows:
            conn.execute(
                "INSERT INTO caption_events (room, seq, session_id, at_ms, duration_ms, speaker,"
                f" language, text, message_id) VALUES ('old', {seq}, {sid}, {at}, {duration},"
                " CAST(? AS TEXT), 'ko', CAST(? AS TEXT), ?)",
                (speaker, text, f"m{seq}"),
            )
        conn.execute("INSERT INTO caption_counters VALUES ('old', 7)")
    conn.close()
    return bad, worse


async def retention_ran(client: Any) -> None:
    """The retention pass that runs at start-up is over: it would withdraw the session
    that ended at -inf, which these tests file by hand to see it rendered."""
    captions = client.app[captions_key]
    for _ in range(200):
        if captions.retention_passes:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the start-up retention pass did not run")


async def test_the_worst_stored_rows_still_render(client: Any, tmp_path: Path) -> None:
    await retention_ran(client)
    bad, worse = store_worst_rows(tmp_path / "db.sqlite3")
    pages = ["/r/old/captions", "/r/old/transcripts", "/api/v1/rooms/old/captions?after=0"]
    pages += [f"/pid/{pid}{ext}" for pid in (bad, worse) for ext in EXPORTS]
    for url in pages:
        response = await client.get(url)
        assert response.status == 200, (url, await response.text())
        body = await response.read()
        assert b"\x00" not in body and b"\x01" not in body and b"\x1b" not in body, url
        body.decode("utf-8")  # whole characters only
    events = await poll(client, "old")
    assert [e["text"] for e in events] == ["far future", "before 1970", "infinite",
        "not numbers", "nul and  and [2J", "lone\ufffd\ufffd\ufffd\ufffd", ""]  # fmt: skip
    assert all(0 <= e["at"] <= 4_102_444_800_000 for e in events)
    assert all(0 <= e["duration_ms"] <= 3_600_000 for e in events)
    export = await (await client.get(f"/pid/{bad}.json")).json()
    assert len(json.dumps(export)) > 100
    vtt = await (await client.get(f"/pid/{bad}.vtt")).text()
    assert vtt.startswith("WEBVTT") and "far future" in vtt
    srt = await (await client.get(f"/pid/{bad}.srt")).text()
    assert "-->" in srt and "before 1970" in srt
    # Live readers: the SSE stream and captions.txt replay all seven.
    stream = await client.get("/r/old/captions/stream?after=0")
    ids = []
    while len(ids) < 7:
        line = (await asyncio.wait_for(stream.content.readline(), 5)).decode("utf-8")
        if line.startswith("id: "):
            ids.append(int(line[4:]))
    assert ids == [1, 2, 3, 4, 5, 6, 7]
    stream.close()
    text = await client.get("/r/old/captions.txt?after=0")
    lines = [await asyncio.wait_for(text.content.readline(), 5) for _ in range(8)]
    assert lines[1].endswith(b"far future\n") and b"\x00" not in b"".join(lines)
    text.close()


async def test_a_new_caption_is_never_filed_into_a_session_from_the_future(
    client: Any, tmp_path: Path
) -> None:
    await retention_ran(client)
    bad, _ = store_worst_rows(tmp_path / "db.sqlite3")
    response = await send(client, "batch", body_for("batch", room="old", text="today"))
    assert response.status == 200
    today = [e for e in await poll(client, "old") if e["text"] == "today"]
    assert today and today[0]["session"] != bad and today[0]["seq"] == 8
    withdrawn = await client.delete(f"/api/v1/transcripts/{bad}", headers=ADMIN_AUTH)
    assert withdrawn.status == 204
    assert [e["text"] for e in await poll(client, "old")] == ["today"]  # it survived
    assert (await client.get("/r/old/transcripts")).status == 200
    assert (await client.get(f"/pid/{today[0]['session']}.vtt")).status == 200


# ---- the captioner's side: what delivery sends fits the same schema --------------------


async def test_what_delivery_sends_validates_against_the_wire_schema(aiohttp_client: Any) -> None:
    """Bridge and vosk results become events the captioner's Delivery posts; the bodies
    it really sends read back through plenary.wire as the same events."""
    bodies: list[bytes] = []

    async def take(request: web.Request) -> web.Response:
        bodies.append(await request.read())
        return web.json_response({"accepted": [], "duplicates": 0, "refused": 0})

    app = web.Application()
    app.router.add_post("/api/v1/captions", take)
    server = await aiohttp_client(app)
    sent = [
        CaptionEvent("", "Speaker 3", "ko", "안녕하세요 😀", False, 12.48, 13.2, "u0",
                     meeting_id="b1c2-meeting", endpoint="e5a6b7c8"),
        CaptionEvent("", "Speaker 2", "ko", "안녕하세요 여러분", True, 12.48, 13.9, "u1",
                     meeting_id="b1c2-meeting", endpoint="e4f1a2b3"),
        CaptionEvent("keynote", "Ana <b>", "en", 'tab\tand "quotes" & <tags>', True, 0.0,
                     1e6, "u2"),
    ]  # fmt: skip
    delivery = Delivery(str(server.make_url("/")), "tok", 10)
    await delivery.start()
    for event in sent:
        delivery.offer(event)
    received: dict[str, CaptionEvent] = {}
    async with asyncio.timeout(5):
        while len(received) < len(sent):
            await asyncio.sleep(0.01)
            for body in bodies:
                for n, item in enumerate(wire.json_body(body)["events"]):
                    event, timestamp = wire.producer_event(item, n, None)
                    assert timestamp is not None and abs(timestamp - now_ms()) < 60_000
                    received[event.text] = event
    await delivery.close()
    for event in sent:
        got = received[event.text]
        assert bool(got.event_id) == event.is_final  # a final carries its id
        assert got == replace(event, event_id=got.event_id)
