"""Jigasi's SEND_JSON_REMOTE_URLS posts, exactly as docs/protocols.md §2 documents them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.app import create_app
from orchestrator.captions.jigasi import JigasiError, parse, room_from_jid
from plenary.settings import load_settings
from tests.captions_helpers import cli_rooms

SECRET = "jigasi-shared-secret"
JID = "Keynote@conference.meet.example.org"
T0 = time.time_ns() // 1_000_000 - 60_000  # a minute ago: within a day of server time
CT = {"Content-Type": "application/json; charset=UTF-8"}


def speech(text: str, pid: str = "p1", name: str | None = "Ana", ms: int = 1000) -> bytes:
    participant: dict[str, Any] = {"id": pid, "email": "a@example.org", "avatar_url": ""}
    if name is not None:
        participant["name"] = name
    return json.dumps(
        {
            "event": "SPEECH",
            "room_name": JID,
            "timestamp": T0 + ms,
            "participant": participant,
            "transcript": [{"text": text, "confidence": 0.92}],
            "language": "en-US",
            "is_interim": False,
            "message_id": f"m-{ms}",
            "stability": 0.0,
            "type": "transcription-result",
        }
    ).encode()


def join(pid: str, name: str) -> bytes:
    body = {"room_name": JID, "event": "JOIN", "timestamp": T0, "participant": {"id": pid}}
    if name:
        body["participant"]["name"] = name  # type: ignore[index]
    return json.dumps(body).encode()


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> Any:
    cli_rooms(tmp_path / "db.sqlite3", "keynote")  # a public room, made with the CLI
    settings = load_settings(
        orchestrator={"database": tmp_path / "db.sqlite3"},
        captions={"jigasi_secret": SECRET},
    )
    return await aiohttp_client(create_app(settings))


async def captions(client: Any, room: str = "keynote") -> list[dict[str, Any]]:
    data = await (await client.get(f"/api/v1/rooms/{room}/captions")).json()
    return list(data["events"])


def test_room_jid_maps_to_the_lowercased_local_part() -> None:
    assert room_from_jid(JID) == "keynote"
    assert room_from_jid("plain") == "plain"
    with pytest.raises(JigasiError):
        room_from_jid("@conference.example.org")


def test_parse_documented_shapes() -> None:
    post = parse(speech("hello"))
    assert (post.event, post.room, post.text, post.participant) == (
        "SPEECH",
        "keynote",
        "hello",
        post.participant,
    )
    assert post.participant is not None and post.participant.name == "Ana"
    assert parse(speech("x", name=None)).participant.name == "Fellow Jitser"  # type: ignore[union-attr]
    for event in ("RAISE_HAND", "WILL_END"):
        assert parse(json.dumps({"event": event, "room_name": JID}).encode()).event == event


async def test_a_documented_meeting(client: Any) -> None:
    url = f"/api/v1/jigasi/{SECRET}"
    bodies = [
        json.dumps({"room_name": JID, "event": "START", "timestamp": T0}).encode(),
        join("p1", "Ana Lima"),
        join("p2", ""),
        speech("Good morning & welcome", "p1", name="Ana Lima", ms=1000),
        speech("안녕하세요 <everyone>", "p2", name=None, ms=3000),
        json.dumps({"event": "RAISE_HAND", "room_name": JID}).encode(),
        json.dumps({"room_name": JID, "event": "LEAVE", "timestamp": T0 + 4000,
                    "participant": {"id": "p2", "name": "Fellow Jitser"}}).encode(),
        json.dumps({"event": "WILL_END", "room_name": JID}).encode(),
        json.dumps({"room_name": JID, "event": "END", "timestamp": T0 + 5000}).encode(),
    ]  # fmt: skip
    for body in bodies:
        response = await client.post(url, data=body, headers=CT)
        assert response.status == 200, await response.text()
    got = await captions(client)
    assert [(e["seq"], e["speaker"], e["text"], e["at"]) for e in got] == [
        (1, "Ana Lima", "Good morning & welcome", T0 + 1000),
        (2, "Fellow Jitser", "안녕하세요 <everyone>", T0 + 3000),
    ]
    assert got[0]["session"] == got[1]["session"]  # START … END is one session
    # After END, the next caption begins a new session (a new transcript).
    await client.post(url, data=speech("again", ms=9000), headers=CT)
    later = await captions(client)
    assert later[-1]["session"] != got[0]["session"]


async def test_join_supplies_the_name_when_speech_has_none(client: Any) -> None:
    headers = {**CT, "X-Plenary-Secret": SECRET}
    await client.post("/api/v1/jigasi", data=join("p9", "Bo Kim"), headers=headers)
    await client.post("/api/v1/jigasi", data=speech("hi", "p9", name=None), headers=headers)
    assert [e["speaker"] for e in await captions(client)] == ["Bo Kim"]


async def test_a_wrong_secret_is_refused(client: Any) -> None:
    wrong = await client.post("/api/v1/jigasi/not-the-secret", data=speech("x"), headers=CT)
    assert wrong.status == 403
    missing = await client.post("/api/v1/jigasi", data=speech("x"), headers=CT)
    assert missing.status == 401
    header = {**CT, "X-Plenary-Secret": "nope"}
    assert (await client.post("/api/v1/jigasi", data=speech("x"), headers=header)).status == 403
    assert await captions(client) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"event": "SPEECH"}', "room_name"),
        (json.dumps({"event": "DANCE", "room_name": JID}).encode(), "event: must be one of"),
        (
            json.dumps(
                {"event": "SPEECH", "room_name": JID, "participant": {"id": "p"}, "transcript": []}
            ).encode(),
            "transcript",
        ),  # fmt: skip
        (json.dumps({"event": "JOIN", "room_name": JID}).encode(), "participant"),
        (
            json.dumps({"event": "START", "room_name": JID, "timestamp": "soon"}).encode(),
            "timestamp",
        ),  # fmt: skip
        (b"\xff\xfe", "UTF-8"),
    ],
)
async def test_a_malformed_body_is_400_without_side_effects(
    client: Any, body: bytes, message: str
) -> None:
    await client.post(f"/api/v1/jigasi/{SECRET}", data=speech("before"), headers=CT)
    response = await client.post(f"/api/v1/jigasi/{SECRET}", data=body, headers=CT)
    assert response.status == 400
    assert message in (await response.json())["detail"]
    got = await captions(client)
    assert [e["text"] for e in got] == ["before"]
    sessions = await (await client.get("/r/keynote/transcripts")).text()
    assert sessions.count("/pid/") == 5  # one session: its page link and four exports


async def test_a_room_plenary_does_not_know_is_404(client: Any) -> None:
    body = speech("hello").replace(b"Keynote@", b"Nowhere@")
    response = await client.post(
        "/api/v1/jigasi", data=body, headers={**CT, "X-Plenary-Secret": SECRET}
    )
    assert response.status == 404 and response.content_type == "application/problem+json"
    assert "nowhere" in (await response.json())["detail"]
    assert await captions(client) == []
