"""``!transcript`` end to end: a real ngircd, the real orchestrator over HTTP, the relay
reading its channel table, an independent IRC client asking.

The answer names the room by its title, says which time zone the transcript's times
are in, and links the transcripts page the orchestrator serves under its public
address, which the relay learns from the orchestrator (its own irc.transcript_url is
left empty here).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bench.harness.ircservers import HOST, RawClient, binary, relay_running, start_server, until
from bench.harness.netutil import free_port
from bench.harness.rooms_helpers import AUTH, room_json
from bench.harness.rooms_helpers import TOKEN as ADMIN
from bots.irc.keys import OrchestratorChannels
from bots.irc.relay import Relay
from bots.irc.source import SseCaptionSource
from orchestrator.app import create_app
from plenary.settings import IrcRoomSettings, IrcSettings, load_settings
from tests.test_irc_servers import network

PRODUCER = "producer-token"
READER = "relay-reader-token"
ANYONE = {"access": [{"kind": "anyone"}], "moderators": []}


@pytest.fixture
async def orchestrator(tmp_path: Path) -> AsyncIterator[str]:
    """The app at a fixed port, so that its public_url is the address it answers on,
    with two public rooms in different zones."""
    port = free_port()
    base = f"http://{HOST}:{port}"
    settings = load_settings(
        orchestrator={"database": tmp_path / "db.sqlite3", "admin_token": ADMIN,
                      "public_url": base},
        captions={"producer_token": PRODUCER, "service_readers": {"relay": READER},
                  "heartbeat_seconds": 1.0},
    )  # fmt: skip
    server = TestServer(create_app(settings), host=HOST, port=port)
    await server.start_server()
    async with aiohttp.ClientSession() as http:
        for slug, title, zone, channel in (
            ("keynote", "Keynote", "Europe/Berlin", "#keynote"),
            ("panel", "Panel: Access [Day 2]", "Asia/Seoul", "#panel"),
        ):
            body = room_json(slug, title=title, policy=ANYONE, irc_channel=channel)
            body["schedule"]["timezone"] = zone
            r = await http.post(f"{base}/api/v1/rooms", json=body, headers=AUTH)
            assert r.status == 201, await r.text()
    yield base
    await server.close()


def relay_settings(port: int) -> IrcSettings:
    rooms = [
        IrcRoomSettings(room="keynote", channel="#keynote"),
        IrcRoomSettings(room="panel", channel="#panel"),
    ]
    return IrcSettings(networks={"default": network(port, nick="relay")}, rooms=rooms)


async def test_transcript_answer_has_title_zone_and_a_link_the_orchestrator_serves(
    orchestrator: str, tmp_path: Path
) -> None:
    if binary("ngircd") is None:
        pytest.skip("ngircd is not installed (make deps installs it)")
    base = orchestrator
    with start_server("ngircd", tmp_path) as srv:
        observer = await RawClient.connect(srv.port, "watcher", "#keynote")
        async with aiohttp.ClientSession() as http:
            source = SseCaptionSource(base, http, token=READER, reconnect_min=0.2)
            keys = OrchestratorChannels(base, READER, http)
            relay = Relay(relay_settings(srv.port), source, channels=keys)
            async with relay_running(relay):
                client = relay.clients["default"]
                await until(lambda: client.channels["#keynote"].joined, 10, "the relay in #keynote")
                # A caption, so the transcript has a session to list.
                r = await http.post(
                    f"{base}/api/v1/rooms/keynote/captions",
                    json={"events": [{"speaker": "Alice", "text": "welcome", "language": "en"}]},
                    headers={"Authorization": f"Bearer {PRODUCER}"},
                )
                assert r.status == 202, await r.text()
                await until(lambda: "<Alice> welcome" in observer.texts("relay"), 10, "caption")

                # In the channel (spelled in another case): that room only.
                observer.send("PRIVMSG #KeyNote :!transcript")
                await until(lambda: answers(observer), 10, "an answer in the channel")
                url = f"{base}/r/keynote/transcripts"
                assert answers(observer) == [
                    f"Full transcript of Keynote (times in Europe/Berlin): {url}"
                ]
                assert observer.notices[-1].param(0).lower() == "#keynote"

                # In private: every room of the relay.
                observer.notices.clear()
                observer.send("PRIVMSG relay :!transcript")
                await until(lambda: len(answers(observer)) == 2, 10, "answers in private")
                panel = f"{base}/r/panel/transcripts"
                assert answers(observer) == [
                    f"Full transcript of Keynote (times in Europe/Berlin): {url}",
                    f"Full transcript of Panel: Access [Day 2] (times in Asia/Seoul): {panel}",
                ]

            # The link is the page the orchestrator serves, for anyone (a public room).
            async with aiohttp.ClientSession() as anonymous:
                page = await anonymous.get(url)
                assert page.status == 200, await page.text()
                html = await page.text()
                assert "Transcripts: Keynote" in html and "/pid/" in html
                assert (await anonymous.get(panel)).status == 200
        await observer.close()


def answers(observer: RawClient) -> list[str]:
    return [n.param(-1) for n in observer.notices if n.nick == "relay"]
