"""Captions marked up for people, through the real app: a room in Seoul whose captions
come from Jigasi (no durations), in Korean and English.

Each caption line, page and export says its language; times are in the room's zone with
the zone named; headings carry the room's title; no WebVTT/SRT cue has zero length; the
text stream opens and closes with sentences; a reader that hangs up is let go at once.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import datetime
from html import escape as html_escape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
import webvtt
from aiohttp import web

from bench.harness.netutil import free_port
from bench.harness.rooms_helpers import TOKEN as ADMIN
from orchestrator.app import create_app
from plenary.settings import load_settings
from tests.captions_helpers import make_room

SECRET = "jigasi-people-secret"
SEOUL = ZoneInfo("Asia/Seoul")
T0 = time.time_ns() // 1_000_000 - 60_000
TITLE = "Opening keynote & <welcome>"
LINES = [  # (ms after T0, speaker, language, text) as Jigasi posts them
    (0, "김민지", "ko", "안녕하세요, 여러분."),
    (2500, "Ana Lima", "en", "Good morning & welcome"),
    (2600, "김민지", "ko", "다음 발표를 시작합니다. 오늘은 회의록 이야기를 합니다."),
]
CT = {"Content-Type": "application/json; charset=UTF-8"}
VOID = {"meta", "link", "br", "input", "img", "hr"}


def jigasi_speech(ms: int, speaker: str, language: str, text: str) -> bytes:
    return json.dumps(
        {
            "event": "SPEECH", "room_name": "seoul@conference.meet.example.org",
            "timestamp": T0 + ms, "participant": {"id": f"p-{speaker}", "name": speaker},
            "transcript": [{"text": text, "confidence": 0.9}], "language": language,
            "is_interim": False, "message_id": f"m-{ms}", "stability": 0.0,
            "type": "transcription-result",
        }
    ).encode()  # fmt: skip


def elements(html: str) -> list[tuple[str, str, dict[str, str | None], str]]:
    """(tag, effective lang, attributes, text) of every element, in document order."""
    found: list[list[Any]] = []
    stack: list[int] = []

    class Walk(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            own = dict(attrs)
            lang = own.get("lang") or (found[stack[-1]][1] if stack else "")
            found.append([tag, lang, own, ""])
            if tag not in VOID:
                stack.append(len(found) - 1)

        def handle_endtag(self, tag: str) -> None:
            while stack and found[stack.pop()][0] != tag:
                pass

        def handle_data(self, data: str) -> None:
            for index in stack:
                found[index][3] += data

    Walk().feed(html)
    return [(t, lang, a, " ".join(text.split())) for t, lang, a, text in found]


def local(ms: int) -> str:
    return datetime.fromtimestamp((T0 + ms) / 1000, SEOUL).strftime("%H:%M:%S")


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> Any:
    settings = load_settings(
        orchestrator={"database": tmp_path / "db.sqlite3", "admin_token": ADMIN},
        captions={"jigasi_secret": SECRET},
    )
    client = await aiohttp_client(create_app(settings))
    schedule = {"start": "2030-03-01T10:00", "end": "2030-03-01T11:00", "timezone": "Asia/Seoul"}
    await make_room(client, "seoul", title=TITLE, languages=["ko", "en"], schedule=schedule)
    return client


async def post_meeting(client: Any) -> str:
    """The meeting through Jigasi's endpoint; the transcript's identifier."""
    for line in LINES:
        response = await client.post(
            f"/api/v1/jigasi/{SECRET}", data=jigasi_speech(*line), headers=CT
        )
        assert response.status == 200, await response.text()
    poll = await (await client.get("/api/v1/rooms/seoul/captions?after=0")).json()
    assert [e["language"] for e in poll["events"]] == ["ko", "en", "ko"]
    return str(poll["events"][0]["session"])


async def test_captions_page_marks_languages_title_and_zone(client: Any) -> None:
    await post_meeting(client)
    html = await (await client.get("/r/seoul/captions")).text()
    found = elements(html)
    assert found[0][:2] == ("html", "ko")  # the page is in the room's caption language
    by_tag = {tag: (lang, text) for tag, lang, _, text in reversed(found)}
    assert by_tag["h1"] == ("en", f"Captions: {TITLE}")  # Plenary's words are English
    assert by_tag["title"][0] == "en" and by_tag["nav"][0] == "en"
    assert by_tag["p"][0] == "en"  # the notice, with the zone named
    assert "Times are KST (Asia/Seoul)." in html
    lines = [(lang, a, text) for tag, lang, a, text in found if tag == "li"]
    assert [(lang, text) for lang, _, text in lines] == [
        ("ko", f"{local(0)} 김민지: 안녕하세요, 여러분."),
        ("en", f"{local(2500)} Ana Lima: Good morning & welcome"),
        ("ko", f"{local(2600)} 김민지: 다음 발표를 시작합니다. 오늘은 회의록 이야기를 합니다."),
    ]
    assert [a.get("lang") for _, a, _ in lines] == [None, "en", None]  # only where it differs
    assert len(html.encode()) < 4000  # a few kB for low-bandwidth attendees


async def test_transcript_pages_and_exports(client: Any, tmp_path: Path) -> None:
    pid = await post_meeting(client)
    listing = await (await client.get("/r/seoul/transcripts")).text()
    assert f"<h1>Transcripts: {html_escape(TITLE)}</h1>" in listing
    assert "KST (Asia/Seoul)" in listing

    html = await (await client.get(f"/pid/{pid}")).text()
    found = elements(html)
    assert found[0][:2] == ("html", "ko")
    h1 = next((lang, text) for tag, lang, _, text in found if tag == "h1")
    assert h1 == ("en", f"Transcript: {TITLE}")
    assert {lang for tag, lang, _, _ in found if tag in ("nav", "title")} == {"en"}
    assert "times are KST (Asia/Seoul)" in html
    stamps = re.findall(r'<time datetime="([^"]+)">', html)
    assert len(stamps) == 3 and all(s.endswith("+09:00") for s in stamps)
    lines = [(lang, text) for tag, lang, _, text in found if tag == "li" and ":" in text]
    assert [lang for lang, text in lines if "Good morning" in text or "김민지" in text] == [
        "ko",
        "en",
        "ko",
    ]

    vtt = await (await client.get(f"/pid/{pid}.vtt")).text()
    assert vtt.startswith("WEBVTT\nLanguage: ko\n\n")
    cues = webvtt.from_string(vtt, strict=True).captions
    assert len(cues) == 3
    assert all(c.end_in_seconds > c.start_in_seconds for c in cues), vtt
    assert "<lang en>Good morning &amp; welcome</lang>" in cues[1].raw_text
    # Jigasi sent no durations: each cue starts when its caption arrived and is shown
    # until the next arrived, but never shorter than its text takes to read.
    assert [c.start for c in cues] == ["00:00:00.000", "00:00:02.500", "00:00:02.600"]
    assert cues[0].end == "00:00:02.500"
    assert cues[1].end_in_seconds - cues[1].start_in_seconds >= 1.0
    assert cues[2].end_in_seconds - cues[2].start_in_seconds >= 2.0  # 31 characters

    srt = await (await client.get(f"/pid/{pid}.srt")).text()
    (tmp_path / "t.srt").write_text(srt, encoding="utf-8")
    srt_cues = webvtt.from_srt(str(tmp_path / "t.srt")).captions  # parsed back
    assert len(srt_cues) == 3
    assert all(c.end_in_seconds > c.start_in_seconds for c in srt_cues), srt

    data = await (await client.get(f"/pid/{pid}.json")).json()
    assert (data["language"], data["timezone"], data["title"]) == ("ko", "Asia/Seoul", TITLE)
    assert [c["language"] for c in data["captions"]] == ["ko", "en", "ko"]


async def test_text_stream_names_the_zone_and_closes_with_a_sentence(client: Any) -> None:
    await post_meeting(client)
    stream = await client.get("/r/seoul/captions.txt?after=0")
    hello = (await asyncio.wait_for(stream.content.readline(), 5)).decode()
    assert hello == f"-- Live captions of {TITLE}; times are KST (Asia/Seoul).\n"
    lines = [(await asyncio.wait_for(stream.content.readline(), 5)).decode() for _ in LINES]
    stamp, rest = lines[1][1:].split("] ", 1)
    assert rest == "<Ana Lima> Good morning & welcome\n"
    when = datetime.fromisoformat(stamp)
    assert stamp.endswith("+09:00") and int(when.timestamp()) == (T0 + 2500) // 1000

    async def rest_of_stream() -> bytes:
        return await asyncio.wait_for(stream.content.read(), 10)

    tail = asyncio.create_task(rest_of_stream())
    await asyncio.sleep(0.2)
    await client.server.close()  # the server restarts: every stream ends with a sentence
    closing = (await tail).decode()
    assert closing == (
        "-- Stopped: the server is restarting. To go on from here, run: "
        "curl -N 'http://127.0.0.1:8080/r/seoul/captions.txt?after=3'\n"
    )


async def test_a_reader_that_hangs_up_is_let_go_without_a_caption(tmp_path: Path) -> None:
    """Served as ``plenary serve`` does (web.AppRunner: handlers are not cancelled when
    the client leaves), read through a plain socket: the gauge drops within two seconds
    of the client closing, with no caption sent to find out."""
    settings = load_settings(
        orchestrator={"database": tmp_path / "db.sqlite3", "admin_token": ADMIN},
        captions={"jigasi_secret": SECRET},
    )
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            await make_room(http, "seoul", title=TITLE)
            await post_meeting(http)

            async def gauge() -> float:
                text = await (await http.get("/metrics")).text()
                match = re.search(r'^plenary_text_subscribers\{kind="text"\} (\S+)$', text, re.M)
                assert match, "no text subscribers gauge"
                return float(match.group(1))

            before = await gauge()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /r/seoul/captions.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200")
            await asyncio.wait_for(reader.readuntil(b"Live captions of"), 5)  # it is open
            assert await gauge() == before + 1
            writer.close()
            await writer.wait_closed()
            closed = time.monotonic()
            while await gauge() != before:
                assert time.monotonic() - closed < 2.0, "the gauge did not drop within 2 s"
                await asyncio.sleep(0.05)
    finally:
        await runner.cleanup()
