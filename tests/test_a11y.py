"""Accessibility in a real headless Chromium: axe-core finds no violations on the pages
attendees and organizers use, and the keyboard reaches everything with visible focus."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from orchestrator.app import create_app
from orchestrator.app_keys import db_key
from orchestrator.rooms.model import RoomCreate
from orchestrator.rooms.repository import RoomRepository
from orchestrator.web.web_keys import directory_key
from tests.browser import AXE, Browser, Page, chromium_binary
from tests.web_helpers import FakeDirectory, web_settings

pytestmark = [
    pytest.mark.skipif(
        chromium_binary() is None, reason="chromium is not installed (apt-get install chromium)"
    ),
    pytest.mark.skipif(
        not AXE.exists(), reason="axe-core is missing (npm install --prefix tests/.node axe-core)"
    ),
]

ROOM = {
    "slug": "keynote", "title": "Opening keynote", "description": "Welcome and plans.",
    "languages": ["ko", "en"], "contact": "orga@example.org", "irc_channel": "#keynote",
    "schedule": {"start": "2099-05-01T10:00", "end": "2099-05-01T11:00",
                 "timezone": "Asia/Seoul"},
    "policy": {"access": [{"kind": "ldap_group", "group": "admins"}],
               "moderators": [{"kind": "user", "source": "ldap", "name": "carol"}]},
    "transcript_retention_days": 30,
}  # fmt: skip
_NOW = datetime.now(UTC).replace(microsecond=0, second=0, tzinfo=None)
OPEN_NOW = {**ROOM, "slug": "now", "title": "Happening now",
            "schedule": {"start": (_NOW - timedelta(weeks=600, hours=1)).isoformat(),
                         "end": (_NOW - timedelta(weeks=600) + timedelta(hours=2)).isoformat(),
                         "timezone": "UTC", "recurrence": "weekly"}}  # fmt: skip


@pytest.fixture
async def site(aiohttp_server: Any, tmp_path: Path) -> str:
    settings = web_settings(tmp_path)
    settings.wiki.enabled = True  # show both login methods (no wiki is contacted)
    app = create_app(settings)
    app[directory_key] = FakeDirectory()

    async def seed(app: web.Application) -> None:
        repo = RoomRepository(app[db_key])
        for body in (ROOM, OPEN_NOW):
            await repo.create(RoomCreate.model_validate(body))

    app.on_startup.append(seed)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Page]:
    async with Browser.start(tmp_path / "chromium-profile") as browser:
        yield await browser.new_page()


async def assert_accessible(page: Page, what: str, lang: str = "en") -> None:
    """axe finds nothing; the page's language is ``lang`` (a captions or transcript page
    is in its captions' language), and every heading and the navigation are English."""
    violations = await page.axe()
    assert violations == [], f"axe-core on {what}: {violations}"
    assert await page.evaluate("document.documentElement.lang") == lang
    chrome = await page.evaluate(
        "[...document.querySelectorAll('h1,h2,h3,nav')].map(e => e.closest('[lang]').lang)"
    )
    assert set(chrome) == {"en"}, chrome
    levels = await page.evaluate(
        "[...document.querySelectorAll('h1,h2,h3,h4')].map(h => +h.tagName[1])"
    )
    assert levels and levels[0] == 1 and levels.count(1) == 1, levels
    assert all(b - a <= 1 for a, b in pairwise(levels)), levels
    landmarks = await page.evaluate(
        "['header','nav','main'].map(t => document.querySelectorAll(t).length)"
    )
    assert landmarks == [1, 1, 1]


async def log_in(page: Page, site: str, user: str, password: str, nxt: str = "/") -> None:
    await page.goto(f"{site}/login?next={nxt}")
    await page.submit(
        f"document.getElementById('username').value = {user!r};"
        f"document.getElementById('password').value = {password!r};"
        "document.querySelector('form[action=\"/login/ldap\"]').submit()"
    )


async def test_public_pages(page: Page, site: str) -> None:
    for path in ("/", "/rooms", "/schedule?lang=ko&tz=Europe/Berlin", "/r/keynote", "/login"):
        await page.goto(site + path)
        await assert_accessible(page, path)


async def test_pages_with_errors(page: Page, site: str) -> None:
    await page.goto(f"{site}/schedule?tz=Nowhere")
    await assert_accessible(page, "schedule with a bad zone")
    await page.goto(f"{site}/login")
    await page.submit(
        "document.getElementById('username').value = 'bob';"
        "document.getElementById('password').value = 'wrong';"
        "document.querySelector('form[action=\"/login/ldap\"]').submit()"
    )
    assert "Wrong user name or password" in await page.evaluate("document.body.innerText")
    await assert_accessible(page, "login with an error")


async def test_denied_and_closed_pages(page: Page, site: str) -> None:
    await log_in(page, site, "bob", "bob-pw", "/r/now")
    assert await page.evaluate("location.pathname") == "/r/now"
    await assert_accessible(page, "room page, logged in")
    await page.submit("document.querySelector('button[value=video]').click()")
    text = await page.evaluate("document.body.innerText")
    assert "You cannot join Happening now" in text and "orga@example.org" in text
    await assert_accessible(page, "denied page")
    await page.goto(f"{site}/r/keynote")
    await page.submit("document.querySelector('button[value=video]').click()")
    assert "is not open" in await page.evaluate("document.body.innerText")
    await assert_accessible(page, "closed page")


async def test_organizer_forms(page: Page, site: str) -> None:
    await log_in(page, site, "olga", "olga-pw", "/rooms/new")
    assert await page.evaluate("location.pathname") == "/rooms/new"
    await assert_accessible(page, "new room form")
    await page.submit(
        "document.getElementById('f-slug').value = 'Bad Name';"
        "document.getElementById('f-title').value = 'T';"
        "document.getElementById('f-start').value = '2099-01-01T10:00';"
        "document.getElementById('f-end').value = '2099-01-01T09:00';"
        "document.querySelector('main form').submit()"
    )
    assert "The room was not saved" in await page.evaluate("document.body.innerText")
    await assert_accessible(page, "new room form with errors")
    await page.goto(f"{site}/r/keynote/edit")
    await assert_accessible(page, "edit room form")


async def test_keyboard_reaches_skip_link_then_navigation(page: Page, site: str) -> None:
    await page.goto(f"{site}/r/keynote")
    first = await page.press_tab()
    assert first["href"] == "#main" and first["text"] == "Skip to content"
    assert first["focusVisible"] and first["outline"] != "none"
    second = await page.press_tab()
    assert second["tag"] == "A" and second["outline"] != "none"
    # every control of the page is reachable with Tab, in order, none trapped
    seen = []
    for _ in range(40):
        focused = await page.press_tab()
        seen.append((focused["tag"], focused["text"]))
        if focused["tag"] == "BODY":
            break
    labels = [text for _, text in seen]
    assert "Join video" in labels and "Join low-bandwidth (audio only)" in labels
    assert "Follow captions as text" in labels


async def test_the_harness_does_find_violations(page: Page) -> None:
    """A page with known faults: proves axe really runs and reports."""
    await page.goto("data:text/html,<html><body><form><input type=text></form></body></html>")
    found = {v["id"] for v in await page.axe()}
    assert {"html-has-lang", "label"} <= found


@pytest.fixture
async def captioned_site(aiohttp_server: Any, tmp_path: Path) -> str:
    """A room whose captions were taken by the orchestrator, as a captioner's are."""
    from orchestrator.captions import captions_key
    from plenary.events import CaptionEvent

    app = create_app(web_settings(tmp_path))
    app[directory_key] = FakeDirectory()

    async def seed(app: web.Application) -> None:
        devs = {"access": [{"kind": "ldap_group", "group": "devs"}], "moderators": []}
        await RoomRepository(app[db_key]).create(
            RoomCreate.model_validate({**ROOM, "policy": devs})
        )
        lines = ["안녕하세요, 여러분.", "Welcome <everyone> & thanks 🎉", "다음 발표를 시작합니다."]
        for n, text in enumerate(lines):
            await app[captions_key].accept(
                CaptionEvent("keynote", f"Speaker {n % 2 + 1}", "en" if n == 1 else "ko", text,
                             True, n * 3.0, n * 3.0 + 2.5, f"m{n}")
            )  # fmt: skip

    app.on_startup.append(seed)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


async def test_caption_and_transcript_pages(page: Page, captioned_site: str) -> None:
    # The room's captions are for its attendees (LDAP group devs): alice logs in first.
    await log_in(page, captioned_site, "alice", "alice-pw", "/r/keynote/captions")
    assert await page.evaluate("location.pathname") == "/r/keynote/captions"
    await assert_accessible(page, "captions page", lang="ko")
    langs = await page.evaluate(
        "[...document.querySelectorAll('#lines li')].map(l => l.closest('[lang]').lang)"
    )
    assert langs == ["ko", "en", "ko"]  # each line in its own language
    text = await page.evaluate("document.body.innerText")
    assert "다음 발표를 시작합니다." in text and "Welcome <everyone> & thanks" in text
    await page.goto(f"{captioned_site}/r/keynote/transcripts")
    await assert_accessible(page, "transcripts list")
    html = await page.evaluate("document.documentElement.outerHTML")
    pids = [part.split('"')[0] for part in html.split('href="/pid/')[1:]]
    assert pids, "no transcript linked from the transcripts list"
    await page.goto(f"{captioned_site}/pid/{pids[0]}")
    await assert_accessible(page, "transcript page", lang="ko")
    await page.goto(f"{captioned_site}/r/keynote")
    assert "Make a read token" in await page.evaluate("document.body.innerText")
    await assert_accessible(page, "room page with the read token form")


async def test_refused_reader_page(page: Page, captioned_site: str) -> None:
    # bob is not in LDAP group devs: he is told why and whom to ask.
    await log_in(page, captioned_site, "bob", "bob-pw", "/r/keynote/captions")
    text = await page.evaluate("document.body.innerText")
    assert "You cannot read the captions of Opening keynote" in text
    assert "orga@example.org" in text and "not a member of LDAP group devs" in text
    await assert_accessible(page, "refused reader page")
