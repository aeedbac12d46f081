"""A captioner's correction reaches IRC and a browser once: a real ngircd, slapd,
Chromium, the real app and relay.

The relay reads the app's SSE stream (``SseCaptionSource``), an independent IRC client
watches the channel and Chromium the captions page. The correction is made while no
relay runs; the page shows it live, once; a relay restarted from its delivered
positions posts it once, as one line, and never again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
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
    start_server,
    until,
)
from bench.harness.rooms_helpers import AUTH, room_json
from bench.harness.slapd import PASSWORDS, Slapd, run_slapd, slapd_binary
from bots.irc.relay import Relay
from bots.irc.source import CorrectionEvent, SseCaptionSource, correction_from_json
from orchestrator.app import create_app
from orchestrator.captions import captions_key
from plenary.settings import IrcNetworkSettings, IrcRoomSettings, IrcSettings
from tests.browser import Browser, chromium_binary
from tests.test_captions_corrections import POLICY, PRODUCER, settings_for
from tests.web_helpers import csrf_of

pytestmark = [
    pytest.mark.skipif(slapd_binary() is None, reason="slapd is not installed"),
    pytest.mark.skipif(binary("ngircd") is None, reason="ngircd is not installed"),
    pytest.mark.skipif(chromium_binary() is None, reason="chromium is not installed"),
]


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with run_slapd(tmp_path_factory.mktemp("slapd")) as server:
        yield server


def test_correction_shape() -> None:
    pos, event = correction_from_json(
        "hall", '{"pos":9,"seq":4,"revision":2,"text":"a\\r\\nb","speaker":"Kim","by":"x","at":1}'
    )
    assert pos == 9 and isinstance(event, CorrectionEvent)
    assert (event.corrects, event.revision, event.speaker) == (4, 2, "Kim")
    for bad in ('{"pos":0,"seq":1,"revision":1}', '{"pos":2,"seq":1}', "[]",
                '{"pos":2,"seq":1,"revision":1,"text":3}'):  # fmt: skip
        with pytest.raises(ValueError):
            correction_from_json("hall", bad)


def irc(port: int) -> IrcSettings:
    network = IrcNetworkSettings(host=HOST, port=port, tls=False, nick="relay",
                                 reconnect_min=0.5, reconnect_max=4.0,
                                 registration_timeout=5.0)  # fmt: skip
    return IrcSettings(
        networks={"default": network}, rooms=[IrcRoomSettings(room="hall", channel="#hall")]
    )


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    async with Browser.start(tmp_path / "chromium-profile") as found:
        yield found


async def test_a_correction_is_one_irc_line_once(
    slapd: Slapd, browser: Browser, tmp_path: Path
) -> None:
    settings = settings_for(slapd, f"sqlite:///{tmp_path / 'db.sqlite3'}", heartbeat_seconds=1.0)
    app = create_app(settings)
    server = TestServer(app, host=HOST)
    await server.start_server()
    base = f"http://{HOST}:{server.port}"
    with start_server("ngircd", tmp_path) as ircd:
        observer = await RawClient.connect(ircd.port, "watcher", "#hall")
        async with aiohttp.ClientSession(base, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            body = room_json("hall", policy=POLICY, caption_readers=[{"kind": "anyone"}])
            assert (await http.post("/api/v1/rooms", json=body, headers=AUTH)).status == 201
            relay = Relay(irc(ircd.port), source(base, http))
            async with relay_running(relay):
                hub = app[captions_key].hub
                await until(lambda: joined(relay) and hub.subscribers("hall") == 1, 10, "relay")
                posted = await http.post(
                    "/api/v1/rooms/hall/captions",
                    json={"events": [{"speaker": "Kim", "text": "발표자는 김 교수입니다."},
                                     {"speaker": "Kim", "text": "시작합니다."}]},
                    headers={"Authorization": f"Bearer {PRODUCER}"},
                )  # fmt: skip
                seqs = (await posted.json())["accepted"]
                await until(lambda: relay.delivered.get("hall") == seqs[-1], 15, "captions")
            watch = await browser.new_page()  # a reader's browser on the captions page
            await watch.goto(f"{base}/r/hall/captions")
            await watch.until("document.getElementById('status').textContent === 'Live.'")
            # While no relay runs, alice (slapd login) corrects the first caption.
            page = await (await http.get("/login")).text()
            login = await http.post(
                "/login/ldap",
                data={"username": "alice", "password": PASSWORDS["alice"],
                      "csrf_token": csrf_of(page), "next": "/"},
                allow_redirects=False,
            )  # fmt: skip
            assert login.status == 303
            edit = await (await http.get("/r/hall/captions/edit")).text()
            fixed = await http.post(
                f"/api/v1/rooms/hall/captions/{seqs[0]}/corrections",
                json={"text": "발표자는 金 교수입니다.\r\nPRIVMSG #hall :evil\x00 \x01ACTION x\x01",
                      "speaker": "Kim Min"},
                headers={"X-CSRF-Token": csrf_of(edit)},
            )  # fmt: skip
            assert fixed.status == 200, await fixed.text()
            pos = (await fixed.json())["pos"]
            line = f"document.getElementById('c{seqs[0]}').textContent"
            shown = await watch.until(f"{line}.includes('(corrected)') && {line}")
            assert shown.endswith(
                "Kim Min: 발표자는 金 교수입니다. PRIVMSG #hall :evil ACTION x (corrected)"
            )
            second = Relay(irc(ircd.port), source(base, http), positions=relay.delivered)
            async with relay_running(second):
                await until(lambda: second.delivered.get("hall") == pos, 15, "the correction")
                await http.post(
                    "/api/v1/rooms/hall/captions", json={"speaker": "Lee", "text": "다음"},
                    headers={"Authorization": f"Bearer {PRODUCER}"},
                )  # fmt: skip
                await until(lambda: second.delivered.get("hall") == pos + 1, 15, "next caption")
                await asyncio.sleep(1.0)  # a repeat would arrive now
            await watch.until("document.querySelectorAll('#lines li').length === 3")
            assert await watch.evaluate("document.getElementById('lines').dataset.fixed") == "1"
        lines = observer.texts("relay")
        raw = b"".join(observer.raw)
        await observer.close()
    await server.close()
    corrections = [t for t in lines if t.startswith("* correction:")]
    assert corrections == [
        "* correction: <Kim_Min> 발표자는 金 교수입니다. PRIVMSG #hall :evil ACTION x"
    ]
    # The captions (one line or two, as the queue packs them), the correction, the next.
    assert lines[-2:] == [*corrections, "<Lee> 다음"]
    assert all(t.startswith("<Kim> ") for t in lines[:-2])
    assert not any(t.startswith("evil") for t in lines)  # CR LF made no line of their own
    assert b"\x00" not in raw and b"\x01" not in raw


def source(base: str, http: aiohttp.ClientSession) -> SseCaptionSource:
    return SseCaptionSource(base, http, reconnect_min=0.2, reconnect_max=2.0)
