"""Restricted rooms are listed only to those who may see them, through the real app.

Rooms are created over the API with the admin token; people log in through the login
form against a real slapd (alice, bob: devs; carol: none; admin: an organizer).

    open        access anyone                                   → everyone
    caption     access admins, caption readers anyone (public)  → everyone
    devroom     access devs                                     → bob, alice, organizers
    readersroom access admins, caption readers ldap user carol  → carol, alice, organizers

Anonymous /api/v1/rooms, /api/v1/schedule, /rooms, /schedule and /calendar.ics never
contain a restricted room's slug; members see theirs; the admin token, a service
reader's token and organizers see all; any other bearer token is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from icalendar import Calendar

from bench.harness.rooms_helpers import AUTH, TOKEN, room_json
from bench.harness.slapd import PASSWORDS, Slapd, run_slapd, slapd_binary
from orchestrator.app import create_app
from plenary.settings import load_settings
from tests.web_helpers import JITSI_SECRET, login

pytestmark = pytest.mark.skipif(slapd_binary() is None, reason="slapd is not installed")

RELAY = "relay-reader-token-0123456789"
ALL = {"open", "caption", "devroom", "readersroom"}
PUBLIC = {"open", "caption"}
RESTRICTED = ALL - PUBLIC


def rooms() -> list[dict[str, Any]]:
    def ldap_group(name: str) -> dict[str, Any]:
        return {"access": [{"kind": "ldap_group", "group": name}], "moderators": []}

    return [
        room_json("open", title="Open talk"),
        room_json("caption", title="Public captions", policy=ldap_group("admins"),
                  caption_readers=[{"kind": "anyone"}]),
        room_json("devroom", title="Dev sync", policy=ldap_group("devs"), irc_channel="#dev"),
        room_json("readersroom", title="Board", policy=ldap_group("admins"),
                  caption_readers=[{"kind": "user", "source": "ldap", "name": "carol"}]),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with run_slapd(tmp_path_factory.mktemp("slapd")) as server:
        yield server


@pytest.fixture
async def client(aiohttp_client: Any, slapd: Slapd, tmp_path: Path) -> Any:
    settings = load_settings(
        orchestrator={"database": tmp_path / "listings.sqlite3", "admin_token": TOKEN,
                      "organizers": ["admin"]},
        ldap=slapd.settings().model_dump(mode="json"),
        jitsi={"domain": "meet.example.org", "app_secret": JITSI_SECRET},
        captions={"service_readers": {"irc-relay": RELAY}},
    )  # fmt: skip
    client = await aiohttp_client(create_app(settings))
    for body in rooms():
        created = await client.post("/api/v1/rooms", json=body, headers=AUTH)
        assert created.status == 201, await created.text()
    return client


async def seen(client: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """What each listing shows this client: slugs from the API, raw text elsewhere."""
    api = await client.get("/api/v1/rooms", headers=headers)
    assert api.status == 200, await api.text()
    schedule = await client.get("/api/v1/schedule", headers=headers)
    feed = await client.get("/calendar.ics", headers=headers)
    assert feed.status == 200
    cal = Calendar.from_ical(await feed.read())
    return {
        "api": {r["slug"] for r in await api.json()},
        "schedule": {s["slug"] for s in await schedule.json()},
        "ical": {str(e["URL"]).rsplit("/", 1)[-1] for e in cal.walk("VEVENT")},
        "text": (await feed.text())
        + await (await client.get("/rooms")).text()
        + await (await client.get("/schedule")).text(),
        "private": feed.headers.get("Cache-Control", ""),
    }


async def as_user(client: Any, name: str) -> dict[str, Any]:
    r = await login(client, name, PASSWORDS[name])
    assert r.status == 303, await r.text()
    return await seen(client)


async def test_anonymous_sees_public_rooms_only(client: Any) -> None:
    view = await seen(client)
    assert view["api"] == view["schedule"] == view["ical"] == PUBLIC
    for slug in RESTRICTED:
        assert slug not in view["text"], slug  # not in /rooms, /schedule or the feed
    assert "Dev sync" not in view["text"] and "#dev" not in view["text"]
    assert "Open talk" in view["text"] and "Public captions" in view["text"]
    assert "Rooms for invited attendees are listed once you" in view["text"]
    assert "private" not in view["private"]
    for path in ("/api/v1/rooms/devroom", "/api/v1/rooms/devroom/schedule"):
        r = await client.get(path)
        assert r.status == 404 and (await r.json())["detail"] == "no room named 'devroom'"
    assert (await client.get("/api/v1/rooms/caption")).status == 200


async def test_members_see_the_rooms_that_admit_them(client: Any) -> None:
    bob = await as_user(client, "bob")
    assert bob["api"] == bob["schedule"] == bob["ical"] == PUBLIC | {"devroom"}
    assert "readersroom" not in bob["text"] and "/r/devroom" in bob["text"]
    assert bob["private"] == "private, no-store"
    room = await client.get("/api/v1/rooms/devroom")
    assert room.status == 200 and (await room.json())["irc_channel"] == "#dev"
    assert (await client.get("/api/v1/rooms/readersroom")).status == 404
    client.session.cookie_jar.clear()
    carol = await as_user(client, "carol")  # a caption reader of readersroom only
    assert carol["api"] == PUBLIC | {"readersroom"}
    client.session.cookie_jar.clear()
    assert (await as_user(client, "alice"))["api"] == ALL  # devs and admins


async def test_organizers_and_the_admin_and_service_tokens_see_all(client: Any) -> None:
    assert (await seen(client, AUTH))["api"] == ALL
    assert (await seen(client, {"Authorization": f"Bearer {RELAY}"}))["ical"] == ALL
    assert (await as_user(client, "admin"))["schedule"] == ALL  # in orchestrator.organizers
    assert (await client.get("/api/v1/rooms/readersroom")).status == 200


async def test_an_unknown_bearer_token_is_refused_not_ignored(client: Any) -> None:
    for path in ("/api/v1/rooms", "/api/v1/schedule", "/calendar.ics", "/api/v1/rooms/open"):
        r = await client.get(path, headers={"Authorization": "Bearer not-a-token"})
        assert r.status == 401, path
        assert r.content_type == "application/problem+json"
        assert "send no token to list the public rooms" in (await r.json())["detail"]
