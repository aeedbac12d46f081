"""Transcripts: persistent identifiers, content negotiation, retention, withdrawal."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from bench.harness.rooms_helpers import AUTH
from bench.harness.rooms_helpers import TOKEN as ADMIN
from orchestrator.app import create_app
from orchestrator.captions import captions_key, recording_notice
from orchestrator.captions.pages import negotiate
from orchestrator.captions.pid import ALPHABET, new_pid, normalize
from orchestrator.captions.store import DAY_MS, now_ms
from plenary.events import CaptionEvent
from plenary.settings import load_settings
from tests.captions_helpers import make_room

TOKEN = "t"
ROOMS = ("a", "old-name", "new-name", "w", "quiet", "other")


@pytest.fixture
async def client(aiohttp_client: Any, database_url: str) -> Any:
    """The app on a new database of each backend in turn (tests/pg_fixtures.py)."""
    settings = load_settings(
        orchestrator={"database_url": database_url, "admin_token": ADMIN},
        captions={"producer_token": TOKEN, "retention_days": 30, "live_only_rooms": ["quiet"]},
    )
    client = await aiohttp_client(create_app(settings))
    for slug in ROOMS:  # public rooms (their policy admits anyone) that keep 30 days
        await make_room(client, slug)
    return client


def event(room: str, text: str) -> CaptionEvent:
    return CaptionEvent(room, "Kim", "ko", text, True, 0.0, 1.5, "m")


def test_identifiers_are_three_blocks_from_an_unambiguous_alphabet() -> None:
    pids = {new_pid() for _ in range(2000)}
    assert len(pids) == 2000
    for pid in pids:
        assert re.fullmatch(rf"[{ALPHABET}]{{4}}(-[{ALPHABET}]{{4}}){{2}}", pid)
    assert not set("01ilou") & set(ALPHABET)
    assert normalize("K7M2 9QXD 3HWA") == "k7m2-9qxd-3hwa"
    assert normalize("k7m2-9qxd-3hw0") is None


def test_negotiation() -> None:
    assert negotiate("") == "html"
    assert negotiate("text/html,application/xhtml+xml,*/*;q=0.8") == "html"
    assert negotiate("application/json") == "json"
    assert negotiate("text/vtt, text/html;q=0.5") == "vtt"
    assert negotiate("*/*") == "html"
    assert negotiate("image/png") is None


async def test_one_url_serves_html_json_and_vtt(client: Any) -> None:
    captions = client.app[captions_key]
    first = await captions.accept(event("a", "안녕하세요 & <환영>"))
    pid = first.session
    page = await client.get(f"/pid/{pid}")
    assert page.status == 200 and page.headers["Vary"] == "Accept"
    assert "안녕하세요 &amp; &lt;환영&gt;" in await page.text()
    data = await (await client.get(f"/pid/{pid}", headers={"Accept": "application/json"})).json()
    assert data["pid"] == pid and data["captions"][0]["text"] == "안녕하세요 & <환영>"
    vtt = await client.get(f"/pid/{pid}", headers={"Accept": "text/vtt"})
    assert vtt.content_type == "text/vtt" and (await vtt.text()).startswith("WEBVTT")
    assert (await client.get(f"/pid/{pid}", headers={"Accept": "image/png"})).status == 406
    upper = await client.get(f"/pid/{pid.upper()}", allow_redirects=False)
    assert upper.status == 301 and upper.headers["Location"] == f"/pid/{pid}"
    assert (await client.get("/pid/2222-2222-2222")).status == 404


async def test_retention_removes_exactly_the_expired_sessions(client: Any) -> None:
    captions = client.app[captions_key]
    store = captions.store
    now = now_ms()
    await make_room(client, "default")
    await make_room(client, "short", transcript_retention_days=7)
    await make_room(client, "forever", transcript_retention_days=36500)
    ages = {  # room → days since its session's last caption
        ("default", 31): "expired",
        ("default", 29): "kept",
        ("short", 8): "expired",
        ("short", 6): "kept",
        ("forever", 400): "kept",
    }
    pids = {}
    for (room, days), _ in ages.items():
        await store.end_session(room, now)  # one session each
        pids[(room, days)] = (
            await captions.accept(event(room, f"{days}d"), now - days * DAY_MS)
        ).session
    expired = set(await store.expire(await captions.retention(), now))
    assert expired == {pids[k] for k, v in ages.items() if v == "expired"}
    for key, fate in ages.items():
        response = await client.get(f"/pid/{pids[key]}")
        assert response.status == (410 if fate == "expired" else 200), key
    gone = await client.get(f"/pid/{pids[('short', 8)]}")
    assert "7 days" in await gone.text() and "withdrawn" in await gone.text()
    assert await store.expire(await captions.retention(), now) == []  # nothing twice


async def test_withdrawn_transcript_leaves_a_stub(client: Any) -> None:
    captions = client.app[captions_key]
    pid = (await captions.accept(event("w", "said"))).session
    denied = await client.delete(f"/api/v1/transcripts/{pid}")
    assert denied.status == 401
    assert denied.content_type == "application/problem+json"
    producer = await client.delete(
        f"/api/v1/transcripts/{pid}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert producer.status == 403  # withdrawing is the administrators' act
    done = await client.delete(f"/api/v1/transcripts/{pid}?reason=Speaker+asked", headers=AUTH)
    assert done.status == 204
    for suffix, accept in (("", "text/html"), ("", "application/json"), (".vtt", "")):
        response = await client.get(f"/pid/{pid}{suffix}", headers={"Accept": accept})
        assert response.status == 410
        assert "Speaker asked" in await response.text()
    assert json.loads(await (await client.get(f"/pid/{pid}.json")).text())["withdrawn"] is True
    poll = await (await client.get("/api/v1/rooms/w/captions")).json()
    assert poll["events"] == []


async def test_live_only_rooms_store_nothing_but_still_stream(client: Any) -> None:
    captions = client.app[captions_key]
    sub = captions.hub.subscribe("quiet")
    caption = await captions.accept(event("quiet", "off the record"))
    assert caption is not None and caption.seq == 1 and caption.session == ""
    assert (await sub.next()) == caption
    assert (await captions.store.after("quiet", 0)) == []
    assert (await captions.store.sessions("quiet")) == []
    assert "not recorded" in await recording_notice(client.app, "quiet")
    assert "kept for 30 days" in await recording_notice(client.app, "other")
    page = await (await client.get("/r/quiet/captions")).text()
    assert "not recorded" in page


async def test_every_cue_lasts_as_long_as_its_speech(client: Any) -> None:
    """The session starts when its first speech did: no cue of 00:00:00.000 --> 00:00:00.000."""
    t0 = now_ms()
    events = [
        {"speaker": "Kim", "text": "첫 문장", "start": 10.0, "end": 12.5, "timestamp": t0},
        {"speaker": "Lee", "text": "둘째", "start": 13.0, "end": 14.0, "timestamp": t0 + 1500},
    ]
    posted = await client.post(
        "/api/v1/rooms/a/captions", json={"events": events},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )  # fmt: skip
    assert posted.status == 202
    poll = await (await client.get("/api/v1/rooms/a/captions?after=0")).json()
    vtt = await (await client.get(f"/pid/{poll['events'][0]['session']}.vtt")).text()
    cues = re.findall(
        r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) --> (\d\d):(\d\d):(\d\d)\.(\d{3})", vtt, re.M
    )

    def ms(h: str, m: str, s: str, f: str) -> int:
        return ((int(h) * 60 + int(m)) * 60 + int(s)) * 1000 + int(f)

    spans = [(ms(*c[:4]), ms(*c[4:])) for c in cues]
    assert [b - a for a, b in spans] == [2500, 1000], vtt
    assert spans[0][0] == 0 and spans[1][1] == 4000  # on the session's clock
