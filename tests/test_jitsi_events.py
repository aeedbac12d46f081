"""Meeting → room and endpoint → name from Prosody's posts, through the real app.

A fake Prosody (tests/fake_prosody.py) posts what event_sync and mod_plenary_occupants
send; captions then arrive the way the bridge captioner delivers them (POST
/api/v1/captions with room "", meeting_id and endpoint), and are read back from the
room's JSON poll.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from orchestrator.app import create_app
from orchestrator.captions.event_sync import EventSyncError, parse
from plenary.settings import Settings, load_settings
from tests.captions_helpers import cli_rooms
from tests.fake_prosody import FakeProsody, Room

ROOT = Path(__file__).resolve().parent.parent
MODULE = ROOT / "deploy" / "prosody" / "mod_plenary_occupants.lua"
SNIPPET = ROOT / "deploy" / "jitsi" / "prosody-plenary.cfg.lua.snippet"
SECRET = "prosody-event-secret"
PRODUCER = "captioner-token"
JIGASI = "jigasi-secret"
READER = "service-reader-token"
ANA = {"id": "ldap:ana", "name": "Ana Kim", "email": "ana@example.org"}


def make_settings(db: Path, secret: str = SECRET, **captions: Any) -> Settings:
    cli_rooms(db, "keynote")  # the room Plenary knows, made with the CLI
    return load_settings(
        orchestrator={"database": db},
        captions={
            "event_sync_secret": secret,
            "producers": {"captioner-1": PRODUCER},
            "jigasi_secret": JIGASI,
            "service_readers": {"reader": READER},
            **captions,
        },
    )


class App:
    """The orchestrator on a real port; ``restart`` keeps the port and the database."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.server = TestServer(create_app(settings))
        self.http: aiohttp.ClientSession | None = None

    async def start(self, port: int | None = None) -> None:
        if port is not None:
            self.server = TestServer(create_app(self.settings), port=port)
        await self.server.start_server()
        if self.http is None:
            self.http = aiohttp.ClientSession(f"http://127.0.0.1:{self.server.port}")

    async def restart(self) -> None:
        port = self.server.port
        await self.server.close()
        await self.start(port)

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()
        await self.server.close()

    @property
    def client(self) -> aiohttp.ClientSession:
        assert self.http is not None
        return self.http

    async def caption(self, meeting: str, endpoint: str, text: str, speaker: str) -> Any:
        event = {
            "id": f"{meeting}-{endpoint}-{text}",
            "room": "",
            "meeting_id": meeting,
            "endpoint": endpoint,
            "speaker": speaker,
            "language": "en",
            "text": text,
            "is_final": True,
        }
        async with self.client.post(
            "/api/v1/captions",
            json={"events": [event]},
            headers={"Authorization": f"Bearer {PRODUCER}"},
        ) as response:
            assert response.status < 300, await response.text()
            return await response.json()

    async def poll(self, room: str) -> list[tuple[str, str]]:
        """What is stored under ``room`` (as a service reader, who reads every key)."""
        auth = {"Authorization": f"Bearer {READER}"}
        async with self.client.get(f"/api/v1/rooms/{room}/captions", headers=auth) as response:
            assert response.status == 200
            data = await response.json()
        return [(e["speaker"], e["text"]) for e in data["events"]]


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    running = App(make_settings(tmp_path / "db.sqlite3"))
    await running.start()
    yield running
    await running.close()


async def test_captions_of_a_meeting_land_in_its_room_under_token_names(app: App) -> None:
    prosody = FakeProsody(app.client, SECRET)
    room = Room("keynote")
    assert (await prosody.room_created(room)).status == 202
    joined = await prosody.occupant_joined(room, "a1b2c3d4", ANA)
    assert joined.status == 202
    assert await joined.json() == {
        "event": "muc-occupant-joined",
        "recorded": True,
        "meeting_id": room.meeting_id,
        "room": "keynote",
    }
    await prosody.occupant_joined(room, "e5f6a7b8", None)  # no token: no name
    await prosody.occupant_joined(room, "0dd0dd00", {"id": "x", "name": "Bo\x1b[31m\r\nBo"})
    await app.caption(room.meeting_id, "a1b2c3d4", "hello everyone", "Speaker 1")
    await app.caption(room.meeting_id, "e5f6a7b8", "hi", "Speaker 2")
    await app.caption(room.meeting_id, "ffff0000", "who am I", "Speaker 3")  # never joined
    await app.caption(room.meeting_id, "0dd0dd00", "controls", "Speaker 4")
    assert await app.poll("keynote") == [
        ("Ana Kim", "hello everyone"),
        ("Speaker 2", "hi"),
        ("Speaker 3", "who am I"),
        ("Bo[31m Bo", "controls"),  # no escape or line break survives into a name
    ]
    assert await app.poll(room.meeting_id) == []


async def test_unmapped_meeting_and_unknown_room_are_refused_per_event(app: App) -> None:
    answer = await app.caption("4f1e-unmapped", "a1", "nobody told us", "Speaker 1")
    assert answer["refused"] == 1 and answer["accepted"][0]["status"] == 404
    assert await app.poll("4f1e-unmapped") == []
    prosody = FakeProsody(app.client, SECRET)
    stranger = Room("notplenarys")  # a Jitsi room Plenary never made
    await prosody.occupant_joined(stranger, "c0ffee00", ANA)
    answer = await app.caption(stranger.meeting_id, "c0ffee00", "not kept", "Speaker 1")
    assert answer["accepted"][0]["status"] == 404
    assert "notplenarys" in answer["accepted"][0]["error"]
    assert await app.poll("notplenarys") == []


async def test_with_accept_unknown_rooms_unmapped_meetings_are_filed_under_their_id(
    tmp_path: Path,
) -> None:
    app = App(make_settings(tmp_path / "db.sqlite3", accept_unknown_rooms=True))
    await app.start()
    try:
        await app.caption("4f1e-unmapped", "a1", "nobody told us", "Speaker 1")
        assert await app.poll("4f1e-unmapped") == [("Speaker 1", "nobody told us")]
        prosody = FakeProsody(app.client, SECRET)
        stranger = Room("notplenarys")  # a Jitsi room Plenary never made
        await prosody.occupant_joined(stranger, "c0ffee00", ANA)
        await app.caption(stranger.meeting_id, "c0ffee00", "still named", "Speaker 1")
        assert await app.poll("notplenarys") == [("Ana Kim", "still named")]
        # Plenary has no policy for them: only the admin and service readers read them.
        async with app.client.get("/api/v1/rooms/notplenarys/captions") as anonymous:
            assert anonymous.status == 404
    finally:
        await app.close()


async def test_breakout_meeting_goes_to_its_own_room_not_the_main_one(app: App) -> None:
    prosody = FakeProsody(app.client, SECRET)
    main = Room("keynote")
    breakout = Room("", breakout_of=main, subject="Breakout room #1")
    await prosody.room_created(main)
    await prosody.occupant_joined(main, "a1b2c3d4", ANA)
    assert (await prosody.room_created(breakout)).status == 202
    await prosody.occupant_left(main, "a1b2c3d4")
    joined = await prosody.occupant_joined(breakout, "a1b2c3d4", ANA)  # same nick moves
    key = f"keynote.breakout-{breakout.node}"
    assert (await joined.json())["room"] == key
    await app.caption(breakout.meeting_id, "a1b2c3d4", "in the breakout", "Speaker 1")
    await app.caption(main.meeting_id, "a1b2c3d4", "back in main", "Speaker 1")
    assert await app.poll(key) == [("Ana Kim", "in the breakout")]
    assert await app.poll("keynote") == [("Ana Kim", "back in main")]


async def test_mapping_and_names_survive_a_restart(app: App) -> None:
    prosody = FakeProsody(app.client, SECRET)
    room = Room("keynote")
    await prosody.room_created(room)
    await prosody.occupant_joined(room, "a1b2c3d4", ANA)
    await app.restart()
    await app.caption(room.meeting_id, "a1b2c3d4", "after restart", "Speaker 1")
    assert await app.poll("keynote") == [("Ana Kim", "after restart")]
    # A trailing caption after the room is destroyed still finds its room and name.
    assert (await prosody.room_destroyed(room)).status == 202
    await app.caption(room.meeting_id, "a1b2c3d4", "late", "Speaker 1")
    assert (await app.poll("keynote"))[-1] == ("Ana Kim", "late")


async def test_stock_event_sync_posts_are_accepted_but_map_nothing(app: App) -> None:
    prosody = FakeProsody(app.client, SECRET)
    room = Room("keynote")
    created = await prosody.event_sync_created(room)
    assert created.status == 202
    assert (await created.json())["recorded"] is False
    joined = await prosody.event_sync_joined(room, ANA)
    body = await joined.json()
    assert joined.status == 202 and body["recorded"] is False and "meeting id" in body["why"]
    await app.caption(room.meeting_id, "a1b2c3d4", "unmapped", "Speaker 1")
    assert await app.poll("keynote") == []


async def test_wrong_or_missing_secret_is_refused(app: App) -> None:
    room = Room("keynote")
    missing = await FakeProsody(app.client, "").room_created(room)
    assert missing.status == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = await FakeProsody(app.client, "not-the-secret").occupant_joined(room, "a1", ANA)
    assert wrong.status == 403
    assert "not valid for Prosody event posts" in (await wrong.json())["detail"]
    answer = await app.caption(room.meeting_id, "a1", "refused join named nobody", "Speaker 1")
    assert answer["accepted"][0]["status"] == 404  # the meeting was never mapped to a room
    assert await app.poll(room.meeting_id) == []


async def test_empty_secret_refuses_every_post_with_a_clear_message(tmp_path: Path) -> None:
    app = App(make_settings(tmp_path / "db.sqlite3", secret=""))
    await app.start()
    try:
        answer = await FakeProsody(app.client, "anything").room_created(Room("keynote"))
        assert answer.status == 403
        assert "captions.event_sync_secret" in (await answer.json())["detail"]
    finally:
        await app.close()


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/occupant/joined", {"event_name": "muc-occupant-joined", "room_jid": "k@c"}, "room_name"),
        (
            "/occupant/joined",
            {"event_name": "muc-occupant-joined", "room_name": "k", "room_jid": "k@c"},
            "occupant",
        ),
        ("/room/created", {"event_name": "muc-room-created", "room_name": "k"}, "room_jid"),
        (
            "/room/created",
            {"event_name": "muc-occupant-left", "room_name": "k", "room_jid": "k@c"},
            "event_name",
        ),
        (
            "/occupant/joined",
            {
                "event_name": "muc-occupant-joined",
                "room_name": "k",
                "room_jid": "k@c",
                "meeting_id": "m1",
                "occupant": {"occupant_jid": "u@d/r", "endpoint_id": "bad id/with slash"},
            },
            "occupant.endpoint_id",
        ),
        (
            "/room/created",
            {
                "event_name": "muc-room-created",
                "room_name": "k",
                "room_jid": "k@c",
                "is_breakout": True,
            },
            "breakout_room_id",
        ),  # fmt: skip
    ],
)
async def test_malformed_post_is_400_naming_the_field(
    app: App, path: str, payload: dict[str, Any], field: str
) -> None:
    answer = await FakeProsody(app.client, SECRET).send(path, payload)
    assert answer.status == 400
    assert (await answer.json())["detail"].startswith(f"{field}:")


async def test_not_json_is_400(app: App) -> None:
    async with app.client.post(
        "/api/v1/events/room/created",
        data=b"{not json",
        headers={"Authorization": f"Bearer {SECRET}"},
    ) as answer:
        assert answer.status == 400
        assert "not JSON" in (await answer.json())["detail"]
    async with app.client.post(
        "/api/v1/events/room/renamed", data=b"{}", headers={"Authorization": f"Bearer {SECRET}"}
    ) as answer:
        assert answer.status == 404


def test_room_names_are_normalized() -> None:
    base = {"event_name": "muc-room-created", "meeting_id": "m"}
    named = {**base, "room_name": "KeyNote", "room_jid": "KeyNote@conference.x"}
    post = parse("room/created", json.dumps(named).encode())
    assert post.room_key == "keynote"
    tenant = {**base, "room_name": "[acme]keynote", "room_jid": "[acme]keynote@conference.x"}
    assert parse("room/created", json.dumps(tenant).encode()).room_key == "acme~keynote"
    with pytest.raises(EventSyncError, match="room_jid"):
        bad = {**base, "room_name": "a/b", "room_jid": "a/b@conference.x"}
        parse("room/created", json.dumps(bad).encode())


async def test_jigasi_join_names_survive_a_restart(app: App) -> None:
    jid = "Keynote@conference.meet.example.org"
    headers = {"Authorization": f"Bearer {JIGASI}", "Content-Type": "application/json"}

    async def post(body: dict[str, Any]) -> None:
        async with app.client.post("/api/v1/jigasi", json=body, headers=headers) as answer:
            assert answer.status == 200, await answer.text()

    await post({"room_name": jid, "event": "JOIN", "timestamp": 1_795_000_000_000,
                "participant": {"id": "p1", "name": "Ana Kim"}})  # fmt: skip
    await app.restart()
    await post(
        {
            "event": "SPEECH",
            "room_name": jid,
            "timestamp": 1_795_000_001_000,
            "participant": {"id": "p1", "name": "Fellow Jitser"},
            "transcript": [{"text": "kept my name", "confidence": 0.9}],
            "language": "en-US",
            "is_interim": False,
            "message_id": "m1",
            "stability": 0.0,
            "type": "transcription-result",
        }
    )
    await post({"room_name": jid, "event": "LEAVE", "timestamp": 1_795_000_002_000,
                "participant": {"id": "p1"}})  # fmt: skip
    assert await app.poll("keynote") == [("Ana Kim", "kept my name")]


def test_prosody_module_compiles_under_prosodys_lua() -> None:
    # Debian 12's prosody 0.12 runs on Lua 5.4 (make deps installs lua5.4).
    assert shutil.which("luac5.4"), "luac5.4 is missing: run make deps"
    for path in (MODULE, SNIPPET):  # the snippet is prosody config: Lua syntax too
        result = subprocess.run(
            ["luac5.4", "-p", "-"], input=path.read_bytes(), capture_output=True, check=False
        )
        assert result.returncode == 0, f"{path.name}: {result.stderr.decode()}"
    header = MODULE.read_text(encoding="utf-8").split("\n\n", 1)[0]
    snippet = SNIPPET.read_text(encoding="utf-8")
    for option in ("plenary_api_prefix", "plenary_api_secret", "plenary_main_muc"):
        assert option in header, f"{option} not documented at the top of the module"
        assert option in snippet, f"{option} missing from the config snippet"
    # event_sync appends /events/<kind> to its api_prefix; Plenary's module appends /<kind>.
    assert 'api_prefix = "https://plenary.example.org/api/v1"\n' in snippet
    assert 'plenary_api_prefix = "https://plenary.example.org/api/v1/events"\n' in snippet


def run_module(codes: str = "202") -> list[dict[str, Any]]:
    """Every request mod_plenary_occupants makes in tests/prosody_harness.lua's meeting."""
    result = subprocess.run(
        ["lua5.4", str(ROOT / "tests" / "prosody_harness.lua"), str(MODULE), codes],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


async def test_the_real_module_posts_what_maps_captions(app: App) -> None:
    requests = run_module()
    kinds = [r["url"].removeprefix("http://plenary.test/api/v1/events/") for r in requests]
    # focus and the health-check room are skipped
    assert kinds == ["room/created", "occupant/joined", "occupant/joined", "room/created",
                     "occupant/left", "occupant/joined", "room/destroyed"]  # fmt: skip
    for request, kind in zip(requests, kinds, strict=True):
        assert request["authorization"] == f"Bearer {SECRET}"
        async with app.client.post(
            f"/api/v1/events/{kind}",
            data=request["body"],
            headers={"Authorization": request["authorization"]},
        ) as answer:
            assert answer.status == 202, await answer.text()
            assert (await answer.json())["recorded"] is True
    breakout = "keynote.breakout-5f0e8b7c-0000-4000-8000-00000000abcd"
    await app.caption("meeting-main-1", "a1b2c3d4", "main", "Speaker 1")
    await app.caption("meeting-main-1", "e5f6a7b8", "guest", "Speaker 2")
    await app.caption("meeting-breakout-1", "a1b2c3d4", "breakout", "Speaker 1")
    assert await app.poll("keynote") == [("Ana Kim", "main"), ("Speaker 2", "guest")]
    assert await app.poll(breakout) == [("Ana Kim", "breakout")]


def test_the_fake_prosody_sends_the_real_modules_fields() -> None:
    """tests/fake_prosody.py must not drift from what the module really posts."""

    def shape(payload: dict[str, Any]) -> set[str]:
        keys = {k for k in payload if k not in ("occupant",)}
        return keys | {f"occupant.{k}" for k in payload.get("occupant", {})}

    def key(body: dict[str, Any]) -> tuple[str, bool, bool]:
        return body["event_name"], body["is_breakout"], "name" in body.get("occupant", {})

    real: dict[tuple[str, bool, bool], set[str]] = {}
    for request in run_module():
        body = json.loads(request["body"])
        real.setdefault(key(body), shape(body))
    fake_posts: list[dict[str, Any]] = []

    class Recorder:
        async def post(self, path: str, data: bytes, headers: dict[str, str]) -> None:
            fake_posts.append(json.loads(data))

    async def play() -> None:
        prosody = FakeProsody(Recorder(), SECRET)
        main = Room("keynote")
        breakout = Room("", breakout_of=main, subject="Breakout room #1")
        await prosody.room_created(main)
        await prosody.occupant_joined(main, "a1b2c3d4", ANA)
        await prosody.occupant_joined(main, "e5f6a7b8", None)
        await prosody.room_created(breakout)
        await prosody.occupant_left(main, "a1b2c3d4")
        await prosody.occupant_joined(breakout, "a1b2c3d4", ANA)
        await prosody.room_destroyed(main)

    asyncio.run(play())
    assert len(fake_posts) == 7
    for body in fake_posts:
        fields = shape(body) - {"created_at"}  # the fake's destroy also says when it began
        assert fields == real[key(body)] - {"created_at"}, key(body)


def test_the_module_retries_5xx_and_connection_failures_but_not_4xx() -> None:
    def attempts(codes: str) -> set[int]:
        counts: dict[str, int] = {}
        for request in run_module(codes):
            counts[request["body"]] = counts.get(request["body"], 0) + 1
        assert len(counts) == 7
        return set(counts.values())

    assert attempts("503,0,202") == {3}  # 503, connection failure, then accepted
    assert attempts("503") == {4}  # plenary_api_retry_count (3) retries, then given up
    assert attempts("400") == {1}  # a refusal is logged, not retried
