"""/calendar.ics parsed back with icalendar; the schedule page with the same filters."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar

from bench.harness.rooms_helpers import AUTH, TOKEN, room_json
from orchestrator.app import create_app
from plenary.settings import load_settings


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> Any:
    settings = load_settings(
        orchestrator={"database": tmp_path / "c.sqlite3", "admin_token": TOKEN,
                      "public_url": "https://events.example.org"}
    )  # fmt: skip
    client = await aiohttp_client(create_app(settings))
    seoul = {"start": "2099-03-02T19:00", "end": "2099-03-02T20:30", "timezone": "Asia/Seoul",
             "recurrence": "weekly", "until": "2099-03-16"}  # fmt: skip
    rooms = [
        room_json("korean", title="한국어 세션", languages=["ko"], schedule=seoul),
        room_json("english", title="English talk", languages=["en-US"]),
    ]
    for body in rooms:
        assert (await client.post("/api/v1/rooms", json=body, headers=AUTH)).status == 201
    return client


async def feed(client: Any, query: str = "") -> Calendar:
    r = await client.get(f"/calendar.ics{query}")
    assert r.status == 200 and r.content_type == "text/calendar"
    return Calendar.from_ical(await r.read())


def events(cal: Calendar) -> list[Any]:
    return [c for c in cal.walk("VEVENT")]


async def test_feed_lists_every_upcoming_session(client: Any) -> None:
    cal = await feed(client)
    evs = events(cal)
    titles = sorted(str(e["SUMMARY"]) for e in evs)
    # the weekly Korean series has exactly three sessions (2, 9, 16 March 2099)
    assert titles == ["English talk", "한국어 세션", "한국어 세션", "한국어 세션"]
    korean = sorted((e for e in evs if str(e["SUMMARY"]) != "English talk"),
                    key=lambda e: e.decoded("DTSTART"))  # fmt: skip
    first = korean[0].decoded("DTSTART")
    assert first == datetime(2099, 3, 2, 19, 0, tzinfo=ZoneInfo("Asia/Seoul"))
    assert korean[0].decoded("DTEND") - first == timedelta(minutes=90)
    assert korean[2].decoded("DTSTART").day == 16
    assert len({str(e["UID"]) for e in evs}) == 4
    assert str(korean[0]["URL"]) == "https://events.example.org/r/korean"
    assert "IRC: #keynote" in str(korean[0]["DESCRIPTION"])


async def test_language_filter(client: Any) -> None:
    assert {str(e["SUMMARY"]) for e in events(await feed(client, "?lang=ko"))} == {"한국어 세션"}
    assert {str(e["SUMMARY"]) for e in events(await feed(client, "?lang=en"))} == {"English talk"}
    assert events(await feed(client, "?lang=fr")) == []


async def test_time_zone_filter_shows_attendee_times(client: Any) -> None:
    cal = await feed(client, "?lang=ko&tz=America/New_York")
    first = min(e.decoded("DTSTART") for e in events(cal))
    assert str(first.tzinfo) == "America/New_York"
    assert (first.hour, first.minute, first.day) == (5, 0, 2)  # 19:00 KST = 05:00 EST
    zones = {str(tz["TZID"]) for tz in cal.walk("VTIMEZONE")}
    assert zones == {"America/New_York"}
    r = await client.get("/calendar.ics?tz=Not/AZone")
    assert r.status == 400


async def test_schedule_page_has_the_same_filters(client: Any) -> None:
    html = await (await client.get("/schedule?lang=ko&tz=Europe/Berlin")).text()
    assert "한국어 세션" in html and "English talk" not in html
    assert "Monday 2 March 2099, 11:00 to 12:30 CET (Europe/Berlin)" in html
    assert 'href="/calendar.ics?lang=ko&amp;tz=Europe/Berlin"' in html
    bad = await client.get("/schedule?tz=Nowhere")
    assert bad.status == 400 and "unknown time zone" in await bad.text()
