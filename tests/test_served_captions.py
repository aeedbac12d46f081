"""What the orchestrator serves fits the one served schema (plenary.wire.ServedCaption),
and the relay's reader refuses what does not, naming the field, and keeps going.

The orchestrator runs on 127.0.0.1 (aiohttp's TestServer); captions are posted by a
producer over ``POST /api/v1/captions`` and read back over the real SSE stream and the
JSON poll. The relay's ``SseCaptionSource`` reads a small SSE server that sends a
malformed caption between two good ones.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from jsonschema import Draft202012Validator

from bench.harness.rooms_helpers import AUTH, room_json
from bench.harness.rooms_helpers import TOKEN as ADMIN
from bots.irc.source import SseCaptionSource, SseParser, caption_from_json
from orchestrator.app import create_app
from plenary.settings import load_settings
from plenary.wire import ServedCaption, WireError, served_caption

HOST = "127.0.0.1"
ROOM = "hall"
PRODUCER = {"Authorization": "Bearer producer-token-0123"}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture
async def base(tmp_path: Path) -> AsyncIterator[str]:
    settings = load_settings(
        orchestrator={"database": tmp_path / "db.sqlite3", "admin_token": ADMIN},
        captions={"producers": {"cap": PRODUCER["Authorization"][7:]}, "heartbeat_seconds": 1.0},
    )
    server = TestServer(create_app(settings), host=HOST)
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as http:
        made = await http.post(f"{url}/api/v1/rooms", json=room_json(ROOM), headers=AUTH)
        assert made.status == 201, await made.text()
    yield url
    await server.close()


def event(n: int, text: str, **over: Any) -> dict[str, Any]:
    return {"id": f"ev-{n}-{time.time_ns()}", "room": ROOM, "speaker": "Kim \"K\" <b>",
            "language": "ko", "text": text, "is_final": True, "start": 1.0, "end": 2.25,
            "message_id": f"m{n}", "timestamp": now_ms(), **over}  # fmt: skip


async def read_sse(
    response: aiohttp.ClientResponse, parser: SseParser, count: int
) -> list[tuple[str, str]]:
    """The next ``count`` (event, data) messages of a live stream, parsed as the relay does."""
    messages: list[tuple[str, str]] = []
    async with asyncio.timeout(10):
        while len(messages) < count:
            chunk = await response.content.readany()
            assert chunk, "the stream ended early"
            messages += [(m.event, m.data) for m in parser.feed(chunk)]
    assert len(messages) == count, messages
    return messages


async def test_what_the_orchestrator_serves_validates_against_the_served_model(
    base: str,
) -> None:
    async with aiohttp.ClientSession() as http:
        stream = await http.get(
            f"{base}/r/{ROOM}/captions/stream?partials=1&after=0",
            headers={"Accept": "text/event-stream"},
        )
        assert stream.status == 200
        # A final first: once it has come, the stream is subscribed (streams.py) and
        # the live-only partial that follows cannot be missed.
        batches = [
            [event(1, "안녕하세요 😀\ttab & \"quotes\"\nline")],
            [event(2, "다음", is_final=False, id=""),
             event(3, "second\x00 one", start=0.0, end=7200.0)],  # an hour at most
        ]  # fmt: skip
        messages: list[tuple[str, str]] = []
        parser = SseParser()
        for batch in batches:
            posted = await http.post(
                f"{base}/api/v1/captions", json={"events": batch}, headers=PRODUCER
            )
            assert posted.status == 200, await posted.text()
            assert all(r["status"] == 200 for r in (await posted.json())["accepted"])
            messages += await read_sse(stream, parser, len(batch))
        stream.close()
        assert [kind for kind, _ in messages] == ["caption", "partial", "caption"]
        served = [ServedCaption.model_validate_json(data) for _, data in messages]
        first, partial, second = served
        assert (partial.seq, partial.is_final, partial.text) == (0, False, "다음")
        assert (first.seq, first.text) == (1, '안녕하세요 😀\ttab & "quotes" line')
        assert first.speaker == 'Kim "K" <b>' and first.room == ROOM and first.session
        assert abs(first.at - now_ms()) < 60_000 and first.duration_ms == 1250
        assert (second.seq, second.text, second.duration_ms) == (2, "second one", 3_600_000)
        # The same captions over the JSON poll, and the schema the OpenAPI document
        # publishes for them accepts exactly what was served.
        poll = await (await http.get(f"{base}/api/v1/rooms/{ROOM}/captions?after=0")).json()
        assert [ServedCaption.model_validate(e) for e in poll["events"]] == [first, second]
        doc = await (await http.get(f"{base}/api/v1/openapi.json")).json()
        get = doc["paths"]["/api/v1/rooms/{room}/captions"]["get"]
        schema = get["responses"]["200"]["content"]["application/json"]["schema"]
        published = Draft202012Validator(schema["properties"]["events"]["items"])
        for _, data in messages:
            published.validate(json.loads(data))
        assert list(published.iter_errors({"seq": "1", "text": 5}))


def test_the_relay_parser_names_what_is_wrong() -> None:
    good = ServedCaption(seq=4, room=ROOM, at=1_700_000_001_500, duration_ms=1500, text="hi")
    seq, parsed = caption_from_json(ROOM, good.model_dump_json())
    assert seq == 4 and (parsed.start, parsed.end, parsed.text) == (
        1_700_000_000.0,
        1_700_000_001.5,
        "hi",
    )
    cases = {
        '{"seq": 5, "at": "soon", "text": "x"}': "caption.at",
        '{"seq": 5, "at": 1, "text": "bad \\ud800"}': "Invalid JSON",
        '{"seq": 5, "at": 1}': "caption.text: Field required",
        '{"seq": true, "at": 1, "text": "x"}': "caption.seq",
        '{"seq": 5, "at": 1, "text": "x", "duration_ms": 1e400}': "caption.duration_ms",
        '{"seq": 0, "at": 1, "text": "x"}': "at least 1",
        "[1, 2]": "caption: must be a JSON object",
        "{not json": "caption: Invalid JSON",
    }
    for data, message in cases.items():
        with pytest.raises(WireError) as refused:
            caption_from_json(ROOM, data)
        assert message in str(refused.value), (data, str(refused.value))
    with pytest.raises(WireError, match="caption.text"):
        served_caption({"seq": 1, "at": 1, "text": 5})  # decoded JSON reads the same way


async def test_the_relay_skips_a_malformed_caption_and_keeps_going(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stream whose second caption is malformed: the relay's source logs what is wrong
    with it, yields the first and the third over the same connection, and loses nothing."""
    good = [ServedCaption(seq=n, room=ROOM, at=1_700_000_000_000 + n, text=f"caption {n}")
            for n in (1, 3)]  # fmt: skip
    bad = '{"seq":2,"room":"hall","at":"yesterday","text":"broken"}'
    body = (
        f"id: 1\nevent: caption\ndata: {good[0].model_dump_json()}\n\n"
        f"id: 2\nevent: caption\ndata: {bad}\n\n"
        f"id: 3\nevent: caption\ndata: {good[1].model_dump_json()}\n\n"
    ).encode()

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(body)
        await asyncio.sleep(30)  # open, as a live stream is
        return response

    app = web.Application()
    app.router.add_get(f"/r/{ROOM}/captions/stream", stream)
    server = TestServer(app, host=HOST)
    await server.start_server()
    caplog.set_level(logging.WARNING, logger="bots.irc.source")
    got: list[tuple[int, str]] = []
    try:
        async with SseCaptionSource(str(server.make_url("")), replay=True) as source:
            async with asyncio.timeout(10):
                async for position, caption in source.events(ROOM):
                    got.append((position, caption.text))
                    if len(got) == 2:
                        break
            assert source.connections == 1
    finally:
        await server.close()
    assert got == [(1, "caption 1"), (3, "caption 3")]
    warned = [r.getMessage() for r in caplog.records if "not understood" in r.getMessage()]
    assert len(warned) == 1 and "caption.at" in warned[0], warned
