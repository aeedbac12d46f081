"""The relay reads the orchestrator's numbered caption stream: a real ngircd, the real app.

Captions are posted over HTTP; the relay reads them with ``SseCaptionSource`` and an
independent IRC client watches the channel. A relay stopped and restarted from its
``delivered`` positions, and an orchestrator restarted under a running relay, lose
and repeat nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bench.harness.ircservers import (
    HOST,
    RawClient,
    binary,
    joined,
    relay_running,
    speaker_pieces,
    start_server,
    until,
)
from bench.harness.rooms_helpers import AUTH, room_json
from bench.harness.rooms_helpers import TOKEN as ADMIN
from bots.irc.relay import Relay
from bots.irc.source import SseCaptionSource, SseMessage, SseParser, caption_from_json
from orchestrator.app import create_app
from orchestrator.captions import captions_key
from orchestrator.captions.model import Item
from plenary.fanout import FanOut
from plenary.settings import (
    IrcNetworkSettings,
    IrcRoomSettings,
    IrcSettings,
    Settings,
    load_settings,
)

TOKEN = "t"
ROOM = "talk"


def test_parser_handles_line_ends_comments_and_split_chunks() -> None:
    stream = (
        "\ufeffretry: 2000\r\n\r\n: keepalive\n\nid: 7\r\nevent: caption\r"
        'data: {"seq":7,\ndata: "x":1}\n\nevent: end\ndata: {"reason":"too slow"}\n\n'
    ).encode()
    parser = SseParser()
    messages: list[SseMessage] = []
    for i in range(len(stream)):  # one byte at a time: every split point
        messages += parser.feed(stream[i : i + 1])
    assert messages == [
        SseMessage("caption", '{"seq":7,\n"x":1}', "7"),
        SseMessage("end", '{"reason":"too slow"}', "7"),
    ]
    assert parser.retry == 2000


def test_caption_shape_of_the_orchestrator() -> None:
    data = (
        '{"seq":3,"room":"talk","session":"p","at":1700000001500,"duration_ms":1500,'
        '"speaker":"Kim","language":"ko","text":"안녕","message_id":"m","is_final":true}'
    )
    seq, event = caption_from_json("talk", data)
    assert seq == 3 and (event.speaker, event.text, event.is_final) == ("Kim", "안녕", True)
    assert (event.start, event.end) == (1700000000.0, 1700000001.5)
    for bad in ('{"seq":"3"}', "[]", '{"seq":0}', '{"seq":1,"text":5}'):
        with pytest.raises(ValueError):
            caption_from_json("talk", bad)


def orchestrator_settings(tmp_path: Path) -> Settings:
    return load_settings(
        orchestrator={"database": tmp_path / "db.sqlite3", "admin_token": ADMIN},
        captions={"producer_token": TOKEN, "heartbeat_seconds": 1.0},
    )


async def create_room(base: str) -> None:
    """The public room ``talk``, made through the rooms API as an organizer would."""
    body = room_json(ROOM, policy={"access": [{"kind": "anyone"}], "moderators": []})
    async with aiohttp.ClientSession() as http:
        r = await http.post(f"{base}/api/v1/rooms", json=body, headers=AUTH)
        assert r.status == 201, await r.text()


def irc_settings(port: int) -> IrcSettings:
    network = IrcNetworkSettings(
        host=HOST,
        port=port,
        tls=False,
        nick="relay",
        reconnect_min=0.5,
        reconnect_max=4.0,
        registration_timeout=5.0,
    )
    return IrcSettings(
        networks={"default": network}, rooms=[IrcRoomSettings(room=ROOM, channel="#room")]
    )


async def post(http: aiohttp.ClientSession, base: str, speaker: str, *texts: str) -> list[int]:
    events = [{"speaker": speaker, "text": t, "language": "en"} for t in texts]
    response = await http.post(
        f"{base}/api/v1/rooms/{ROOM}/captions",
        json={"events": events},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status == 202, await response.text()
    return list((await response.json())["accepted"])


def words(observer: RawClient) -> list[str]:
    """Every word the relay said, in order (merging only moves line boundaries)."""
    out = []
    for text in observer.texts("relay"):
        out += [word for _, rest in speaker_pieces(text) for word in rest.split()]
    return out


async def test_relay_reads_the_stream_and_resumes_without_loss_or_repeat(tmp_path: Path) -> None:
    if binary("ngircd") is None:
        pytest.skip("ngircd is not installed (make deps installs it)")
    settings = orchestrator_settings(tmp_path)
    app = create_app(settings)
    server = TestServer(app, host=HOST)
    await server.start_server()
    port = server.port
    base = f"http://{HOST}:{port}"
    await create_room(base)

    def hub() -> FanOut[Item]:  # the app changes on restart
        return app[captions_key].hub

    with start_server("ngircd", tmp_path) as irc:
        observer = await RawClient.connect(irc.port, "watcher", "#room")
        async with aiohttp.ClientSession() as http:
            # Captions from before the relay's first start are history, not posted.
            await post(http, base, "Old", "history1", "history2")
            source = SseCaptionSource(base, http, reconnect_min=0.2, reconnect_max=2.0)
            first = Relay(irc_settings(irc.port), source)
            async with relay_running(first):
                await until(lambda: joined(first) and hub().subscribers(ROOM) == 1, 10, "start")
                a = await post(http, base, "Alice", "a1", "a2", "a3")
                assert a == [3, 4, 5]
                await until(lambda: first.delivered.get(ROOM) == 5, 15, "a1..a3 delivered")
            assert words(observer) == ["a1", "a2", "a3"]
            await until(lambda: hub().subscribers(ROOM) == 0, 5, "the first stream closed")

            # Posted while no relay runs: the stored stream keeps them.
            await post(http, base, "Bob", "b1", "b2")
            second = Relay(irc_settings(irc.port), source, positions=first.delivered)
            async with relay_running(second):
                await until(lambda: words(observer)[3:] == ["b1", "b2"], 15, "b1, b2")
                await post(http, base, "Carol", "c1", "c2")
                await until(lambda: second.delivered.get(ROOM) == 9, 15, "c1, c2 delivered")

                # The orchestrator restarts under the running relay: its stream ends
                # ("server shutting down"), captions are stored while the relay is
                # away, and it reconnects with Last-Event-ID.
                await server.close()
                app = create_app(settings)
                server = TestServer(app, host=HOST, port=port)
                await server.start_server()
                await post(http, base, "Dana", "d1")
                await until(lambda: hub().subscribers(ROOM) == 1, 10, "the relay back")
                await post(http, base, "Dana", "d2")
                await until(lambda: second.delivered.get(ROOM) == 11, 15, "d1, d2 delivered")
                await asyncio.sleep(1.0)  # anything repeated would arrive now
            connections = source.connections
        await observer.close()
    await server.close()
    assert words(observer) == ["a1", "a2", "a3", "b1", "b2", "c1", "c2", "d1", "d2"]
    assert connections == 3  # first relay, second relay, after the orchestrator restart


async def test_plenary_serve_relays_captions_posted_over_http(tmp_path: Path) -> None:
    """Under ``plenary serve`` the relay reads the store's stream, whoever produced."""
    if binary("ngircd") is None:
        pytest.skip("ngircd is not installed (make deps installs it)")
    from bench.harness.netutil import free_port
    from plenary.compose.serve import loopback_url, serve

    assert loopback_url("0.0.0.0", 80) == "http://127.0.0.1:80"
    assert loopback_url("::", 80) == "http://[::1]:80"
    with start_server("ngircd", tmp_path) as irc:
        observer = await RawClient.connect(irc.port, "watcher", "#room")
        port = free_port()
        settings = load_settings(
            orchestrator={
                "database": tmp_path / "db.sqlite3",
                "host": HOST,
                "port": port,
                "admin_token": ADMIN,
            },
            captions={"producer_token": TOKEN},
            irc=irc_settings(irc.port).model_dump(),
        )
        task = asyncio.create_task(serve(settings, captioner=False))
        base = f"http://{HOST}:{port}"
        try:
            await until_up(base)
            await create_room(base)
            async with aiohttp.ClientSession() as http:
                # A fresh relay starts at each room's newest caption; until its stream
                # is open a caption counts as history. Probe until one is relayed.
                deadline = time.monotonic() + 15
                while "probe" not in words(observer):
                    assert time.monotonic() < deadline, "plenary serve relayed nothing"
                    with contextlib.suppress(aiohttp.ClientError):
                        await post(http, base, "Probe", "probe")
                    await asyncio.sleep(0.5)
                await post(http, base, "Eve", "e1", "e2")
                await observer.wait_for(lambda: words(observer)[-2:] == ["e1", "e2"], 15)
                probes = words(observer)[:-2]
                assert probes and set(probes) == {"probe"}
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await observer.close()


async def until_up(base: str) -> None:
    deadline = time.monotonic() + 15
    async with aiohttp.ClientSession() as http:
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                if (await http.get(f"{base}/healthz")).status == 200:
                    return
            assert time.monotonic() < deadline, "plenary serve did not start"
            await asyncio.sleep(0.1)
