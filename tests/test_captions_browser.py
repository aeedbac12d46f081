"""A real headless Chromium follows the captions page; its accessibility tree has the lines."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bench.harness.rooms_helpers import TOKEN as ADMIN
from orchestrator.app import create_app
from orchestrator.captions import captions_key
from plenary.settings import load_settings
from tests.browser import Browser, Page, chromium_binary
from tests.captions_helpers import cli_rooms, make_room

TOKEN = "browser-test"
READER = "screen-reader-service-token"


pytestmark = pytest.mark.skipif(
    chromium_binary() is None, reason="chromium is not installed (make deps installs it)"
)


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    async with Browser.start(tmp_path / "chromium-profile") as found:
        yield found


async def wait_for(page: Page, expression: str) -> Any:
    return await page.until(expression, 15)


async def _post(http: aiohttp.ClientSession, room: str, speaker: str, text: str) -> None:
    response = await http.post(
        f"/api/v1/rooms/{room}/captions",
        json={"speaker": speaker, "text": text},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status == 202


async def test_live_captions_reach_the_accessibility_tree(browser: Browser, tmp_path: Path) -> None:
    # A restricted room, read in the browser with a token link (as a read token is used).
    devs = '{"access": [{"kind": "ldap_group", "group": "devs"}], "moderators": []}'
    cli_rooms(tmp_path / "db.sqlite3", "hall", policy=devs)
    settings = load_settings(
        orchestrator={"database": tmp_path / "db.sqlite3"},
        captions={"producer_token": TOKEN, "service_readers": {"screen": READER}},
    )
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    base = f"http://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession(base) as http:
        assert (await http.get("/r/hall/captions")).status == 401  # not without the token
        await _post(http, "hall", "Ana", "Before the page opened")
        page = await browser.new_page()
        await page.goto(f"{base}/r/hall/captions?token={READER}")
        await wait_for(page, "document.getElementById('status').textContent === 'Live.'")
        await _post(http, "hall", "김민지", "안녕하세요 <script>x</script> & 반갑습니다")
        await _post(http, "hall", "Bo", "Second live line")
        await wait_for(page, "document.querySelectorAll('#lines li').length === 3")
        region = await page.evaluate(
            "(() => { const l = document.getElementById('lines');"
            " return [l.getAttribute('aria-live'), l.innerText]; })()"
        )
        assert region[0] == "polite"
        assert "김민지: 안녕하세요 <script>x</script> & 반갑습니다" in region[1]
        assert await page.evaluate("document.querySelectorAll('#lines script').length") == 0
        tree = await page.send("Accessibility.getFullAXTree")
        names = [str(node.get("name", {}).get("value", "")) for node in tree["nodes"]] + [
            str(node.get("value", {}).get("value", "")) for node in tree["nodes"]
        ]
        spoken = " ".join(names)
        for text in ("Before the page opened", "안녕하세요", "Second live line", "김민지"):
            assert text in spoken, f"{text!r} not in the accessibility tree"
        # Pause: lines arriving meanwhile wait, then are appended in order.
        await page.evaluate("document.getElementById('pause').click()")
        await _post(http, "hall", "Ana", "Held while paused")
        await wait_for(page, "document.getElementById('pause').textContent.includes('1 new')")
        assert await page.evaluate("document.querySelectorAll('#lines li').length") == 3
        await page.evaluate("document.getElementById('pause').click()")
        last = await wait_for(
            page,
            "document.querySelectorAll('#lines li').length === 4 &&"
            " document.querySelector('#lines li:last-child').textContent",
        )
        assert last.endswith("Ana: Held while paused")
    await server.close()


async def test_live_lines_carry_their_language_and_the_rooms_clock(
    browser: Browser, tmp_path: Path
) -> None:
    """A public room in Seoul: lines added live by the page's script say their language
    where it is not the page's, and show their time on the room's clock, named."""
    settings = load_settings(
        orchestrator={"database": tmp_path / "db.sqlite3", "admin_token": ADMIN},
        captions={"producer_token": TOKEN},
    )
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    base = f"http://127.0.0.1:{server.port}"
    schedule = {"start": "2030-03-01T10:00", "end": "2030-03-01T11:00", "timezone": "Asia/Seoul"}
    async with aiohttp.ClientSession(base) as http:
        await make_room(http, "seoul", title="서울 회의", languages=["ko", "en"], schedule=schedule)
        page = await browser.new_page()
        await page.goto(f"{base}/r/seoul/captions")
        await wait_for(page, "document.getElementById('status').textContent === 'Live.'")
        assert await page.evaluate("document.documentElement.lang") == "ko"
        assert await page.evaluate("document.querySelector('h1').textContent") == (
            "Captions: 서울 회의"
        )
        assert "KST (Asia/Seoul)" in await page.evaluate("document.body.innerText")
        for speaker, language, text in (
            ("김민지", "ko", "안녕하세요"),
            ("Ana Lima", "en", "Good morning"),
        ):
            posted = await http.post(
                "/api/v1/rooms/seoul/captions",
                json={"speaker": speaker, "language": language, "text": text},
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
            assert posted.status == 202
        await wait_for(page, "document.querySelectorAll('#lines li').length === 2")
        shown = await page.evaluate(
            "[...document.querySelectorAll('#lines li')].map(l =>"
            " [l.closest('[lang]').lang, l.querySelector('time').textContent])"
        )
        poll = await (await http.get("/api/v1/rooms/seoul/captions?after=0")).json()
        seoul = ZoneInfo("Asia/Seoul")
        clocks = [
            datetime.fromtimestamp(e["at"] / 1000, seoul).strftime("%H:%M:%S")
            for e in poll["events"]
        ]
        assert shown == [["ko", clocks[0]], ["en", clocks[1]]]
        tree = await page.send("Accessibility.getFullAXTree")
        spoken = " ".join(str(node.get("name", {}).get("value", "")) for node in tree["nodes"])
        assert "김민지" in spoken and "Ana Lima" in spoken  # the speaker, as text
    await server.close()


async def test_a_reader_no_longer_admitted_sees_the_page_stop(
    browser: Browser, tmp_path: Path
) -> None:
    # A public room read anonymously; then the room is restricted and the stream ends
    # (a restart, a dropped reader): the page asks why it cannot reconnect, and stops
    # with a message instead of retrying for ever.
    cli_rooms(tmp_path / "db.sqlite3", "lobby")
    settings = load_settings(
        orchestrator={"database": tmp_path / "db.sqlite3", "admin_token": ADMIN},
        captions={"producer_token": TOKEN},
    )
    app = create_app(settings)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    base = f"http://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession(base) as http:
        page = await browser.new_page()
        await page.goto(f"{base}/r/lobby/captions")
        await wait_for(page, "document.getElementById('status').textContent === 'Live.'")
        await _post(http, "lobby", "Ana", "Said while public")
        await wait_for(page, "document.querySelectorAll('#lines li').length === 1")
        devs = {"access": [{"kind": "ldap_group", "group": "devs"}], "moderators": []}
        changed = await http.patch(
            "/api/v1/rooms/lobby",
            json={"policy": devs},
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        assert changed.status == 200, await changed.text()
        app[captions_key].hub.close_all()  # every live stream ends, as at a restart
        stopped = await wait_for(
            page,
            "document.getElementById('status').textContent.startsWith('Stopped') &&"
            " document.getElementById('status').textContent",
        )
        assert "not available to you" in stopped
        await _post(http, "lobby", "Ana", "Said once restricted")
        await asyncio.sleep(6)  # longer than the page's retry delay
        assert await page.evaluate("document.querySelectorAll('#lines li').length") == 1
        assert (await page.evaluate("document.getElementById('status').textContent")) == stopped
    await server.close()
