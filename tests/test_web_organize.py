"""Organizer forms: only organizers, CSRF, the API's validation, errors shown per field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.app import create_app
from orchestrator.web.web_keys import directory_key
from tests.web_helpers import FakeDirectory, csrf_of, login, web_settings

FORM = {
    "slug": "workshop", "title": "Workshop", "description": "Hands on",
    "languages": "ko en", "start": "2099-06-01T09:00", "end": "2099-06-01T12:00",
    "timezone": "Asia/Seoul", "recurrence": "", "until": "",
    "policy": '{"access": [{"kind": "ldap_group", "group": "devs"}], "moderators": []}',
    "contact": "olga@example.org", "low_bandwidth": "on", "irc_channel": "#workshop",
    "retention_days": "",
}  # fmt: skip


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> Any:
    app = create_app(web_settings(tmp_path, organizer_groups=["devs"]))
    app[directory_key] = FakeDirectory()
    return await aiohttp_client(app)


async def post_form(client: Any, path: str, form: dict[str, str]) -> Any:
    csrf = csrf_of(await (await client.get(path)).text())
    return await client.post(path, data={**form, "csrf_token": csrf}, allow_redirects=False)


async def test_anonymous_is_sent_to_login(client: Any) -> None:
    r = await client.get("/rooms/new", allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/login?next=/rooms/new"


async def test_non_organizer_is_forbidden(client: Any) -> None:
    await login(client, "bob", "bob-pw")
    assert (await client.get("/rooms/new")).status == 403


async def test_organizer_creates_and_edits_a_room(client: Any) -> None:
    await login(client, "olga", "olga-pw")  # named in orchestrator.organizers
    r = await post_form(client, "/rooms/new", FORM)
    assert r.status == 303 and r.headers["Location"] == "/r/workshop"
    room = await (await client.get("/api/v1/rooms/workshop")).json()
    assert room["languages"] == ["ko", "en"] and room["schedule"]["timezone"] == "Asia/Seoul"
    assert room["policy"]["access"] == [{"kind": "ldap_group", "group": "devs"}]
    assert room["transcript_retention_days"] is None and room["low_bandwidth"] is True
    page = await (await client.get("/r/workshop")).text()
    assert "they are not recorded and no transcript is kept" in page
    assert 'href="/r/workshop/captions"' in page and "#workshop" in page

    edit = await (await client.get("/r/workshop/edit")).text()
    assert 'value="2099-06-01T09:00"' in edit and "ldap_group" in edit
    changed = {**FORM, "title": "Workshop, day 1", "retention_days": "14", "low_bandwidth": ""}
    r = await post_form(client, "/r/workshop/edit", changed)
    assert r.status == 303
    room = await (await client.get("/api/v1/rooms/workshop")).json()
    assert room["title"] == "Workshop, day 1" and room["transcript_retention_days"] == 14
    assert room["low_bandwidth"] is False
    page = await (await client.get("/r/workshop")).text()
    assert "the transcript is kept for 14 days" in page
    assert "Join low-bandwidth" not in page


async def test_group_organizer_and_duplicate(client: Any) -> None:
    await login(client, "alice", "alice-pw")  # member of devs (organizer_groups)
    assert (await post_form(client, "/rooms/new", FORM)).status == 303
    r = await post_form(client, "/rooms/new", FORM)
    assert r.status == 409 and "exists already" in await r.text()


@pytest.mark.parametrize(
    ("change", "field", "text"),
    [
        ({"slug": "Bad Name"}, "slug", "room name"),
        ({"end": "2099-06-01T08:00"}, "end", "end must be after its start"),
        ({"timezone": "Moon/Base"}, "timezone", "unknown time zone"),
        ({"policy": "not json"}, "policy", "must be a JSON object"),
        ({"policy": '{"access": [{"kind": "nobody"}]}'}, "policy", "invalid policy"),
        ({"irc_channel": "workshop"}, "irc_channel", "IRC channel starts with #"),
        ({"retention_days": "two"}, "retention_days", "whole number"),
        ({"languages": ""}, "languages", ""),
    ],
)
async def test_invalid_form_shows_errors_by_field(
    client: Any, change: dict[str, str], field: str, text: str
) -> None:
    await login(client, "olga", "olga-pw")
    r = await post_form(client, "/rooms/new", {**FORM, **change})
    assert r.status == 400
    html = await r.text()
    assert f'id="f-{field}"' in html and 'aria-invalid="true"' in html
    assert f'id="e-{field}"' in html and text in html
    assert f'href="#f-{field}"' in html  # the summary links to the field
    assert await (await client.get("/api/v1/rooms")).json() == []


async def test_caption_readers_make_a_restricted_room_public_explicitly(client: Any) -> None:
    await login(client, "olga", "olga-pw")
    bad = await post_form(client, "/rooms/new", {**FORM, "caption_readers": "anyone"})
    assert bad.status == 400 and "Caption readers must be a JSON list" in await bad.text()
    wrong = await post_form(client, "/rooms/new", {**FORM, "caption_readers": '[{"kind": "x"}]'})
    assert wrong.status == 400 and 'id="e-caption_readers"' in await wrong.text()
    public = {**FORM, "caption_readers": '[{"kind": "anyone"}]'}
    assert (await post_form(client, "/rooms/new", public)).status == 303
    room = await (await client.get("/api/v1/rooms/workshop")).json()
    assert room["caption_readers"] == [{"kind": "anyone"}]
    await client.post("/logout", data={"csrf_token": csrf_of(await (await client.get("/")).text())})
    page = await (await client.get("/r/workshop")).text()
    assert "are public: anyone may read them" in page
    assert (await client.get("/r/workshop/captions.txt?after=0", timeout=5)).status == 200
