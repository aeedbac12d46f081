"""/api/v1: rooms CRUD, validation errors, admin token, schedules, the OpenAPI document
(on SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from bench.harness.rooms_helpers import AUTH, TOKEN, room_json
from orchestrator.app import create_app
from orchestrator.rooms.api import api_routes
from plenary.settings import Settings, load_settings


@pytest.fixture
def app_settings(database_url: str) -> Settings:
    """Each test on a new SQLite file and on a new PostgreSQL database."""
    return load_settings(orchestrator={"database_url": database_url, "admin_token": TOKEN})


@pytest.fixture
async def client(aiohttp_client: Any, app_settings: Settings) -> Any:
    return await aiohttp_client(create_app(app_settings))


async def test_crud_round_trip(client: Any) -> None:
    assert await (await client.get("/api/v1/rooms")).json() == []
    created = await client.post("/api/v1/rooms", json=room_json(), headers=AUTH)
    assert created.status == 201, await created.text()
    assert created.headers["Location"] == "/api/v1/rooms/keynote"
    body = await created.json()
    assert body["slug"] == "keynote" and body["languages"] == ["ko", "en"]
    assert body["created_at"] == body["updated_at"]

    got = await (await client.get("/api/v1/rooms/keynote")).json()
    assert got["title"] == "Keynote" and got["irc_channel"] == "#keynote"

    patched = await client.patch(
        "/api/v1/rooms/keynote", json={"title": "Opening keynote"}, headers=AUTH
    )
    assert patched.status == 200
    assert (await patched.json())["title"] == "Opening keynote"
    assert (await patched.json())["description"] == "Opening session"  # untouched

    fields = room_json()
    del fields["slug"]
    fields["transcript_retention_days"] = None
    put = await client.put("/api/v1/rooms/keynote", json=fields, headers=AUTH)
    assert put.status == 200
    assert (await put.json())["transcript_retention_days"] is None

    listed = await (await client.get("/api/v1/rooms")).json()
    assert [r["slug"] for r in listed] == ["keynote"]

    assert (await client.delete("/api/v1/rooms/keynote", headers=AUTH)).status == 204
    missing = await client.get("/api/v1/rooms/keynote")
    assert missing.status == 404
    assert (await missing.json())["detail"] == "no room named 'keynote'"
    assert (await client.delete("/api/v1/rooms/keynote", headers=AUTH)).status == 404


async def test_duplicate_is_409(client: Any) -> None:
    assert (await client.post("/api/v1/rooms", json=room_json(), headers=AUTH)).status == 201
    again = await client.post("/api/v1/rooms", json=room_json(), headers=AUTH)
    assert again.status == 409
    assert "exists" in (await again.json())["detail"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"slug": "Has Space"}, "slug"),
        ({"slug": "a/b"}, "slug"),
        ({"slug": "http-bind"}, "slug"),
        ({"slug": ""}, "slug"),
        ({"title": ""}, "title"),
        ({"languages": ["korean!"]}, "languages"),
        ({"languages": []}, "languages"),
        ({"irc_channel": "nohash"}, "irc_channel"),
        ({"transcript_retention_days": 0}, "transcript_retention_days"),
        ({"unknown": 1}, "unknown"),
        ({"slug": "ends-"}, "slug"),
        ({"policy": {"access": [{"kind": "everyone"}]}}, "policy"),
        ({"policy": {"access": [{"kind": "ldap_group", "group": ""}]}}, "policy"),
        ({"schedule": {"start": "2030-01-01T10:00", "end": "2030-01-01T09:00",
                       "timezone": "UTC"}}, "schedule"),
        ({"schedule": {"start": "2030-01-01T10:00", "end": "2030-01-01T11:00",
                       "timezone": "Mars/Olympus"}}, "schedule.timezone"),
        ({"schedule": {"start": "2030-01-01T10:00", "end": "2030-01-01T11:00",
                       "timezone": "../../etc/passwd"}}, "schedule.timezone"),
    ],
)  # fmt: skip
async def test_invalid_rooms_are_400_naming_the_field(
    client: Any, change: dict[str, Any], field: str
) -> None:
    response = await client.post("/api/v1/rooms", json=room_json(**change), headers=AUTH)
    assert response.status == 400
    body = await response.json()
    assert body["detail"] == "the room is not valid"
    assert any(d["field"] == field for d in body["errors"]), body
    assert (await client.get("/api/v1/rooms")).status == 200
    assert await (await client.get("/api/v1/rooms")).json() == []


async def test_not_json_is_400(client: Any) -> None:
    r = await client.post("/api/v1/rooms", data=b"{nope", headers=AUTH)
    assert r.status == 400
    assert (await r.json())["detail"] == "the request body is not JSON"


async def test_patch_is_validated_as_a_whole(client: Any) -> None:
    await client.post("/api/v1/rooms", json=room_json(), headers=AUTH)
    r = await client.patch(
        "/api/v1/rooms/keynote", json={"irc_channel": "bad channel"}, headers=AUTH
    )
    assert r.status == 400
    assert (await (await client.get("/api/v1/rooms/keynote")).json())["irc_channel"] == "#keynote"


async def test_writes_need_the_token(client: Any) -> None:
    r = await client.post("/api/v1/rooms", json=room_json())
    assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    r = await client.post(
        "/api/v1/rooms", json=room_json(), headers={"Authorization": "Bearer wrong"}
    )
    assert r.status == 403 and r.content_type == "application/problem+json"
    assert await (await client.get("/api/v1/rooms")).json() == []


async def test_no_token_configured_disables_writes(aiohttp_client: Any, tmp_path: Path) -> None:
    settings = load_settings(orchestrator={"database": tmp_path / "p.sqlite3"})
    client = await aiohttp_client(create_app(settings))
    r = await client.post("/api/v1/rooms", json=room_json(), headers={"Authorization": "Bearer "})
    assert r.status == 403
    assert "orchestrator.admin_token" in (await r.json())["detail"]


async def test_schedule_filters_and_zone(client: Any) -> None:
    await client.post("/api/v1/rooms", json=room_json(), headers=AUTH)
    await client.post("/api/v1/rooms", json=room_json("english", languages=["en-GB"]), headers=AUTH)
    everything = await (await client.get("/api/v1/schedule")).json()
    assert {s["slug"] for s in everything} == {"keynote", "english"}
    ko = await (await client.get("/api/v1/schedule?lang=ko")).json()
    assert [s["slug"] for s in ko] == ["keynote"]
    en = await (await client.get("/api/v1/schedule?lang=en")).json()
    assert {s["slug"] for s in en} == {"keynote", "english"}
    seoul = await (await client.get("/api/v1/rooms/keynote/schedule?tz=Asia/Seoul")).json()
    assert seoul[0]["start"].endswith("T10:00:00+09:00")
    bad = await client.get("/api/v1/schedule?tz=Nowhere/City")
    assert bad.status == 400 and "unknown time zone" in (await bad.json())["detail"]


async def test_weekly_series(client: Any) -> None:
    body = room_json()
    body["schedule"]["recurrence"] = "weekly"
    await client.post("/api/v1/rooms", json=body, headers=AUTH)
    sessions = await (await client.get("/api/v1/rooms/keynote/schedule")).json()
    assert len(sessions) == 13  # 90 days ahead
    assert sessions[1]["start"][11:16] == sessions[0]["start"][11:16]


async def test_openapi_document_is_valid_and_complete(client: Any) -> None:
    doc = await (await client.get("/api/v1/openapi.json")).json()
    validate(doc)  # raises on an invalid OpenAPI 3.1 document
    assert doc["openapi"] == "3.1.0"
    # Every route of the rooms API (captions routes document themselves elsewhere).
    for route in api_routes():
        assert route.path in doc["paths"], route.path
        assert route.method.lower() in doc["paths"][route.path], (route.path, route.method)
    mounted = {(r.method, r.resource.canonical) for r in client.app.router.routes() if r.resource}
    assert {(r.method, r.path) for r in api_routes()} <= mounted
    schema = doc["components"]["schemas"]["RoomCreate"]
    assert {"slug", "title", "schedule"} <= set(schema["required"])


async def test_policy_is_stored_normalized(client: Any) -> None:
    policy = {
        "access": [{"kind": "wiki_group", "group": "sysop", "global": True}],
        "moderators": [{"kind": "user", "source": "ldap", "name": "alice"}],
    }
    r = await client.post("/api/v1/rooms", json=room_json(policy=policy), headers=AUTH)
    assert r.status == 201, await r.text()
    # a restricted room: only those it admits (here the admin token) see it
    stored = (await (await client.get("/api/v1/rooms/keynote", headers=AUTH)).json())["policy"]
    assert stored["access"] == [{"kind": "wiki_group", "group": "sysop", "global": True}]
    assert stored["moderators"][0]["name"] == "alice"
