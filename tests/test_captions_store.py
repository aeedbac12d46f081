"""The caption store end to end through HTTP: producers, streams, resume, escaping, limits."""

from __future__ import annotations

import asyncio
import html
import io
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import webvtt
from aiohttp.test_utils import TestServer

from orchestrator.app import create_app
from orchestrator.captions import captions_key
from plenary.settings import Settings, load_settings
from tests.captions_helpers import cli_rooms

TOKEN = "producer-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make_settings(db: str, **captions: Any) -> Settings:
    return load_settings(
        orchestrator={"database_url": db},
        captions={"producer_token": TOKEN, **captions},
    )


@pytest.fixture
def db_path(database_url: str) -> str:
    """A new database of each backend in turn (tests/pg_fixtures.py), with rooms."""
    cli_rooms(database_url, "a", "live", "r", "t", "k", "w", "s")  # public, made with the CLI
    return database_url


async def post(client: Any, room: str, *texts: str, speaker: str = "Kim") -> list[int]:
    events = [{"speaker": speaker, "text": t, "language": "ko"} for t in texts]
    response = await client.post(
        f"/api/v1/rooms/{room}/captions", json={"events": events}, headers=AUTH
    )
    assert response.status == 202, await response.text()
    return list((await response.json())["accepted"])


async def read_sse(response: aiohttp.ClientResponse, count: int) -> list[dict[str, Any]]:
    """The next ``count`` caption events of an SSE response, with their ids."""
    got: list[dict[str, Any]] = []
    fields: dict[str, str] = {}
    while len(got) < count:
        raw = await asyncio.wait_for(response.content.readline(), 10)
        if not raw:
            break
        line = raw.decode().rstrip("\n")
        if line == "":
            if fields.get("event") == "caption":
                data = json.loads(fields["data"])
                assert str(data["seq"]) == fields["id"]
                got.append(data)
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value
    return got


async def test_producer_needs_the_token(aiohttp_client: Any, db_path: str) -> None:
    client = await aiohttp_client(create_app(make_settings(db_path)))
    body = {"text": "hello"}
    assert (await client.post("/api/v1/rooms/a/captions", json=body)).status == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (await client.post("/api/v1/rooms/a/captions", json=body, headers=wrong)).status == 403
    bad = await client.post(
        "/api/v1/rooms/a/captions", json={"events": [{"text": 3}]}, headers=AUTH
    )
    assert bad.status == 400 and "events[0].text" in (await bad.json())["detail"]
    assert bad.content_type == "application/problem+json"
    assert await post(client, "a", "one", "two") == [1, 2]
    poll = await (await client.get("/api/v1/rooms/a/captions?after=0")).json()
    assert [e["text"] for e in poll["events"]] == ["one", "two"]
    assert poll["last_seq"] == 2


async def test_http_disabled_without_a_token(aiohttp_client: Any, db_path: str) -> None:
    settings = load_settings(orchestrator={"database_url": db_path})
    client = await aiohttp_client(create_app(settings))
    response = await client.post("/api/v1/rooms/a/captions", json={"text": "x"}, headers=AUTH)
    assert response.status == 403


def batch_event(n: int, **over: Any) -> dict[str, Any]:
    event = {"id": f"cap-{n}", "room": "live", "speaker": "Lee", "language": "ko",
             "text": f"caption {n}", "is_final": True, "start": 0.0, "end": 1.0,
             "message_id": f"m{n}", "timestamp": int(time.time() * 1000) + n}  # fmt: skip
    return {**event, **over}


async def test_batch_finals_are_stored_and_partials_are_live_only(
    aiohttp_client: Any, db_path: str
) -> None:
    app = create_app(make_settings(db_path, producers={"cap-a": "token-a"}))
    client = await aiohttp_client(app)
    stream = await client.get("/r/live/captions/stream?partials=1&after=0")
    while app[captions_key].hub.subscribers("live") == 0:
        await asyncio.sleep(0.01)
    batch = [
        batch_event(1, id="", text="안녕", is_final=False),
        batch_event(1, text="안녕하세요"),
    ]
    response = await client.post(
        "/api/v1/captions", json={"events": batch}, headers={"Authorization": "Bearer token-a"}
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["accepted"][1] == {
        "id": "cap-1", "status": 200, "room": "live", "seq": 1, "duplicate": False
    }  # fmt: skip
    seen = []
    while len(seen) < 2:
        line = (await asyncio.wait_for(stream.content.readline(), 5)).decode()
        if line.startswith("event: "):
            seen.append(line.strip())
    assert seen == ["event: partial", "event: caption"]
    stream.close()
    poll = await (await client.get("/api/v1/rooms/live/captions")).json()
    assert [(e["seq"], e["text"], e["speaker"]) for e in poll["events"]] == [
        (1, "안녕하세요", "Lee")
    ]


async def test_batch_retry_is_stored_once_across_restart(db_path: str) -> None:
    """A retried final (same event id) gets its first number back, also after a restart.
    An event for a meeting no room is known for is refused alone (404 in its result)."""
    settings = make_settings(db_path, producers={"cap-a": "token-a"})
    auth = {"Authorization": "Bearer token-a"}
    for attempt in range(2):
        server = TestServer(create_app(settings))
        await server.start_server()
        async with aiohttp.ClientSession(f"http://127.0.0.1:{server.port}") as http:
            events = [batch_event(1), batch_event(2), batch_event(3, room="", meeting_id="m-7")]
            if attempt:
                events.append(batch_event(4))
            response = await http.post("/api/v1/captions", json={"events": events}, headers=auth)
            body = await response.json()
            assert response.status == 200
            poll = await (await http.get("/api/v1/rooms/live/captions")).json()
            unknown = await http.get("/api/v1/rooms/m-7/captions")
            assert unknown.status == 404
        await server.close()
        accepted = body["accepted"]
        assert [a["status"] for a in accepted] == [200, 200, 404] + [200] * attempt
        assert "m-7" in accepted[2]["error"]
        assert [a["duplicate"] for a in accepted] == [bool(attempt)] * 2 + [False] * (1 + attempt)
        assert [a["seq"] for a in accepted] == [1, 2, None, 3][: 3 + attempt]
        assert body["duplicates"] == 2 * attempt and body["refused"] == 1
    assert [e["text"] for e in poll["events"]] == ["caption 1", "caption 2", "caption 4"]


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"text": 5}, "events[1].text"),
        ({"id": ""}, "events[1].id"),
        ({"room": "", "meeting_id": ""}, "room or meeting_id"),
        ({"is_final": "yes"}, "events[1].is_final"),
        ({"start": "0"}, "events[1].start"),
        ({"speaker": "a\ud800"}, "events[1].speaker"),
        ({"message_id": "a\nb"}, "events[1].message_id"),
        ({"end": float("nan")}, "events[1].end"),
        ({"timestamp": 1.5}, "events[1].timestamp"),
    ],
)
async def test_batch_with_a_bad_event_is_refused_whole(
    aiohttp_client: Any, db_path: str, bad: dict[str, Any], field: str
) -> None:
    client = await aiohttp_client(create_app(make_settings(db_path, producers={"c": "tok"})))
    auth = {"Authorization": "Bearer tok"}
    events = [batch_event(1), batch_event(2, **bad)]
    response = await client.post("/api/v1/captions", json={"events": events}, headers=auth)
    assert response.status == 400
    assert field in (await response.json())["detail"]
    poll = await (await client.get("/api/v1/rooms/live/captions")).json()
    assert poll["events"] == []  # the good event before it was not taken either
    response = await client.post(
        "/api/v1/captions", json={"events": [batch_event(1)]}, headers=auth
    )
    assert (await response.json())["accepted"][0]["seq"] == 1


async def test_batch_producer_tokens(aiohttp_client: Any, db_path: str) -> None:
    settings = load_settings(
        orchestrator={"database_url": db_path},
        captions={"producers": {"cap-a": "token-a", "leaked": "jwt-signing-secret"}},
        jitsi={"app_secret": "jwt-signing-secret"},
    )
    client = await aiohttp_client(create_app(settings))
    probe = {"events": []}
    cases = {"": 401, "Bearer nope": 403, "Bearer jwt-signing-secret": 403, "Bearer token-a": 200}
    for header, status in cases.items():
        headers = {"Authorization": header} if header else {}
        response = await client.post("/api/v1/captions", json=probe, headers=headers)
        assert response.status == status, (header, await response.text())
    # The older single token still posts to the per-room endpoint, and so does a producer.
    response = await client.post(
        "/api/v1/rooms/a/captions", json={"text": "x"}, headers={"Authorization": "Bearer token-a"}
    )
    assert response.status == 202


async def test_sse_resume_across_restart_delivers_each_event_once(db_path: str) -> None:
    settings = make_settings(db_path, heartbeat_seconds=0.2)
    server = TestServer(create_app(settings))
    await server.start_server()
    port = server.port
    received: list[dict[str, Any]] = []
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
        await post(http, "r", *(f"before {i}" for i in range(5)))
        stream = await http.get("/r/r/captions/stream?after=0")
        received += await read_sse(stream, 5)
        await post(http, "r", "live 5", "live 6")
        received += await read_sse(stream, 1)  # the reader has seen up to 6, not 7 …
        stream.close()  # … and goes away; 8 is stored while it is gone
        await post(http, "r", "while away 7")
        await server.close()

        server = TestServer(create_app(settings), port=port)
        await server.start_server()
        await post(http, "r", "after restart 8", "after restart 9")
        last = received[-1]["seq"]
        stream = await http.get("/r/r/captions/stream", headers={"Last-Event-ID": str(last)})
        received += await read_sse(stream, 4)
        await post(http, "r", "live 11", "live 12")
        received += await read_sse(stream, 2)
        stream.close()
    await server.close()
    assert [e["seq"] for e in received] == list(range(1, 13))
    texts = [e["text"] for e in received]
    assert texts[5:8] == ["live 5", "live 6", "while away 7"] and texts[-1] == "live 12"


async def test_slow_subscriber_is_dropped_with_a_final_message(
    aiohttp_client: Any, db_path: str
) -> None:
    app = create_app(make_settings(db_path, subscriber_queue=3))
    client = await aiohttp_client(app)
    hub = app[captions_key].hub
    slow = hub.subscribe("s")  # never reads while captions arrive
    fast = hub.subscribe("s")
    fast_got: list[int] = []

    async def read_fast() -> None:
        while (caption := await fast.next()) is not None:
            fast_got.append(caption.seq)

    reader = asyncio.create_task(read_fast())
    for i in range(6):
        await post(client, "s", f"line {i}")
    await asyncio.sleep(0.05)
    assert fast_got == [1, 2, 3, 4, 5, 6] and not fast.reason
    assert slow.reason.startswith("too slow")
    drained = []
    while (caption := await slow.next()) is not None:
        drained.append(caption.seq)
    assert drained == [1, 2, 3]  # what was queued is delivered, then the end
    assert hub.subscribers("s") == 1
    reader.cancel()


async def test_text_stream_prints_lines_as_they_come(aiohttp_client: Any, db_path: str) -> None:
    client = await aiohttp_client(create_app(make_settings(db_path, text_backlog=1)))
    await post(client, "t", "old", "recent", speaker="박")
    response = await client.get("/r/t/captions.txt")
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    hello = (await asyncio.wait_for(response.content.readline(), 5)).decode()
    assert hello.startswith("-- Live captions of t; times are ")  # then the room's zone
    first = (await asyncio.wait_for(response.content.readline(), 5)).decode()
    await post(client, "t", "new <b>&", speaker="Ana Lee")
    second = (await asyncio.wait_for(response.content.readline(), 5)).decode()
    stamp, rest = first[1:].split("] ", 1)
    assert first[0] == "[" and rest == "<박> recent\n"
    assert datetime.fromisoformat(stamp).utcoffset() is not None  # ISO 8601 with offset
    assert second.endswith("] <Ana Lee> new <b>&\n")
    response.close()


async def test_a_thousand_awkward_captions(
    aiohttp_client: Any, db_path: str, tmp_path: Path
) -> None:
    client = await aiohttp_client(create_app(make_settings(db_path, page_lines=1000)))
    texts = [
        f"{i} 안녕하세요 회의를 시작합니다 😀🎉 <script>alert('x{i}')</script> & AT&T \"q\""
        for i in range(1000)
    ]
    speaker = "김 <i>&</i>"
    for start in range(0, 1000, 100):
        await post(client, "k", *texts[start : start + 100], speaker=speaker)

    raw = await (await client.get("/api/v1/rooms/k/captions?after=0&limit=1000")).read()
    events = json.loads(raw)["events"]
    assert [e["text"] for e in events] == texts
    assert json.dumps(texts[0], ensure_ascii=False).encode() in raw  # UTF-8, no \u escapes

    page = await (await client.get("/r/k/captions")).text()
    assert "<script>alert" not in page and "<i>&</i>" not in page
    assert page.count("&lt;script&gt;alert(") == 1000
    assert html.escape(texts[999], quote=False) in page.replace("&#34;", '"').replace("&#39;", "'")

    pid = events[0]["session"]
    vtt = await (await client.get(f"/pid/{pid}.vtt")).text()
    cues = webvtt.from_buffer(io.StringIO(vtt)).captions
    assert [html.unescape(c.text) for c in cues] == texts
    assert {html.unescape(c.voice or "") for c in cues} == {speaker}
    srt_path = tmp_path / "t.srt"
    srt_path.write_text(await (await client.get(f"/pid/{pid}.srt")).text(), encoding="utf-8")
    srt = webvtt.from_srt(str(srt_path)).captions
    assert [html.unescape(c.text) for c in srt] == [f"{speaker}: {t}" for t in texts]
    exported = json.loads(await (await client.get(f"/pid/{pid}.json")).read())
    assert [c["text"] for c in exported["captions"]] == texts
    txt = await (await client.get(f"/pid/{pid}.txt")).text()
    assert txt.splitlines()[5].endswith(f"<{speaker}> {texts[5]}")


async def test_page_weight_and_accessibility_basics(aiohttp_client: Any, db_path: str) -> None:
    client = await aiohttp_client(create_app(make_settings(db_path)))
    await post(client, "w", *(f"문장 번호 {i}, 조금 긴 캡션 텍스트입니다." for i in range(60)))
    page = await client.get("/r/w/captions?size=4")
    body = await page.read()
    assert "script-src" not in page.headers["Content-Security-Policy"]  # default-src 'self'
    text = body.decode()
    assets = [
        "/static/plenary.css",
        "/static/captions.css",
        "/static/captions.js",
    ]
    for asset in assets:
        assert f'"{asset}"' in text
    total = len(body) + sum([len(await (await client.get(asset)).read()) for asset in assets])
    assert total < 15_000, f"first view weighs {total} bytes"
    assert "http://" not in text and "https://" not in text  # no external assets
    assert "<script>" not in text and "style=" not in text  # CSP: no inline script/style
    assert 'aria-live="polite"' in text and 'class="size-4"' in text
    assert text.count("<li id=") == 50  # captions.page_lines
    assert "문장 번호 59," in text and "<b>Kim</b>" in text
    assert 'href="?size=4" id="refresh"' in text  # works without JavaScript
    assert "recorded" in text
