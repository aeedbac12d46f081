"""Every orchestrator metric moves when the real app does the thing it counts.

Each test drives the app in-process over HTTP (streams, caption posts, room API, login
and join) and reads ``/metrics`` before and after. The metric objects are module-level,
shared by every app of the test session, so the tests compare differences, never
absolute values (except ``plenary_rooms``, which the app sets outright).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from bench.harness.rooms_helpers import AUTH as ADMIN
from bench.harness.rooms_helpers import TOKEN as ADMIN_TOKEN
from bench.harness.rooms_helpers import room_json
from orchestrator.app import create_app
from orchestrator.app_keys import db_key
from orchestrator.rooms.model import Room, RoomCreate
from orchestrator.rooms.repository import RoomRepository
from orchestrator.web.web_keys import directory_key
from plenary.exposition import registry_key
from plenary.settings import load_settings
from tests.captions_helpers import cli_rooms
from tests.test_prometheus import needs_promtool, promtool
from tests.web_helpers import JITSI_SECRET, FakeDirectory, csrf_of, login

PRODUCER = "producer-secret"
POST_AUTH = {"Authorization": f"Bearer {PRODUCER}"}


CAPTION_ROOMS = ("m", "t", "s", "p", "c", "lint")


def app_for(
    tmp_path: Path, rooms: tuple[str, ...] = CAPTION_ROOMS, **over: dict[str, Any]
) -> web.Application:
    """The web tests' app (fake directory, Jitsi secret) with an admin and a producer token,
    and the public ``rooms`` the caption tests post to (made with the CLI)."""
    cli_rooms(tmp_path / "m.sqlite3", *rooms)
    sections: dict[str, dict[str, Any]] = {
        "orchestrator": {"database": tmp_path / "m.sqlite3", "admin_token": ADMIN_TOKEN},
        "captions": {"producer_token": PRODUCER},
        "ldap": {"enabled": True},
        "jitsi": {"domain": "meet.example.org", "app_secret": JITSI_SECRET},
    }
    for section, values in over.items():
        sections[section] = {**sections.get(section, {}), **values}
    app = create_app(load_settings(None, **sections))
    app[directory_key] = FakeDirectory()
    return app


def key(name: str, **labels: str) -> str:
    return name + json.dumps(labels, sort_keys=True)


async def scrape(client: Any) -> dict[str, float]:
    response = await client.get("/metrics")
    assert response.status == 200
    return {
        key(s.name, **s.labels): s.value
        for family in text_string_to_metric_families(await response.text())
        for s in family.samples
    }


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "the metric did not change in time"
        await asyncio.sleep(0.02)


SSE_SUBS = key("plenary_text_subscribers", kind="sse")
SSE_BYTES = key("plenary_text_sent_bytes_total", kind="sse")
TEXT_SUBS = key("plenary_text_subscribers", kind="text")
TEXT_BYTES = key("plenary_text_sent_bytes_total", kind="text")
JSON_BYTES = key("plenary_text_sent_bytes_total", kind="json")
STORED = key("plenary_caption_store_latency_seconds_count")
STORED_SUM = key("plenary_caption_store_latency_seconds_sum")


async def post(client: Any, room: str, *events: dict[str, Any]) -> None:
    response = await client.post(
        f"/api/v1/rooms/{room}/captions", json={"events": list(events)}, headers=POST_AUTH
    )
    assert response.status == 202, await response.text()


async def test_sse_stream_counts_a_subscriber_while_open_and_its_bytes(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await aiohttp_client(app_for(tmp_path, captions={"heartbeat_seconds": 0.05}))
    await post(client, "m", {"speaker": "Kim", "text": "stored before"})
    before = await scrape(client)
    stream = await client.get("/r/m/captions/stream?after=0")
    received = b""

    async def subscribed() -> bool:
        return (await scrape(client))[SSE_SUBS] == before[SSE_SUBS] + 1

    await until(subscribed)
    await post(client, "m", {"speaker": "Kim", "text": "live one"})
    while b"live one" not in received:
        received += await asyncio.wait_for(stream.content.readany(), 5)
    stream.close()  # the client drops; the next heartbeat write fails on the server

    async def gone() -> bool:
        return (await scrape(client))[SSE_SUBS] == before[SSE_SUBS]

    await until(gone)
    after = await scrape(client)
    assert received.startswith(b"retry: 2000\n\n") and b"stored before" in received
    assert after[SSE_BYTES] - before[SSE_BYTES] >= len(received)
    assert after[TEXT_BYTES] == before[TEXT_BYTES]  # only its own kind


async def test_text_stream_subscriber_and_bytes(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await aiohttp_client(app_for(tmp_path))
    before = await scrape(client)
    stream = await client.get("/r/t/captions.txt")

    async def subscribed() -> bool:
        return (await scrape(client))[TEXT_SUBS] == before[TEXT_SUBS] + 1

    await until(subscribed)
    hello = await asyncio.wait_for(stream.content.readline(), 5)  # room and time zone
    await post(client, "t", {"speaker": "박", "text": "한 줄"})
    line = await asyncio.wait_for(stream.content.readline(), 5)
    assert line.endswith("<박> 한 줄\n".encode())
    assert (await scrape(client))[TEXT_BYTES] - before[TEXT_BYTES] == len(hello + line)
    stream.close()
    # No caption follows: the server notices the closed connection by itself, at once.

    async def gone() -> bool:
        return (await scrape(client))[TEXT_SUBS] == before[TEXT_SUBS]

    await until(gone, 2.5)


async def test_streams_ended_by_shutdown_decrement(aiohttp_client: Any, tmp_path: Path) -> None:
    app = app_for(tmp_path)
    client = await aiohttp_client(app)
    before = await scrape(client)
    streams = [
        await client.get("/r/s/captions/stream"),
        await client.get("/r/s/captions.txt"),
    ]

    async def both() -> bool:
        values = await scrape(client)
        return (values[SSE_SUBS], values[TEXT_SUBS]) == (
            before[SSE_SUBS] + 1,
            before[TEXT_SUBS] + 1,
        )

    await until(both)
    await client.server.close()  # on_shutdown ends every stream with a final message
    for stream in streams:
        stream.close()
    registry = app[registry_key]  # /metrics is gone with the server; read the registry
    assert (
        registry.get_sample_value("plenary_text_subscribers", {"kind": "sse"}) == (before[SSE_SUBS])
    )
    assert (
        registry.get_sample_value("plenary_text_subscribers", {"kind": "text"})
        == (before[TEXT_SUBS])
    )


async def test_json_poll_counts_its_bytes(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await aiohttp_client(app_for(tmp_path))
    await post(client, "p", {"speaker": "Kim", "text": "polled"})
    before = await scrape(client)
    response = await client.get("/api/v1/rooms/p/captions?after=0")
    body = await response.read()
    after = await scrape(client)
    assert after[JSON_BYTES] - before[JSON_BYTES] == len(body) > 0


async def test_store_latency_observed_per_stored_final(aiohttp_client: Any, tmp_path: Path) -> None:
    app = app_for(tmp_path)
    client = await aiohttp_client(app)
    before = await scrape(client)
    await post(
        client,
        "c",
        {"speaker": "Kim", "text": "a final"},
        {"speaker": "Kim", "text": "a partial", "is_final": False},
        {"speaker": "Kim", "text": "   "},  # an empty final is not stored
    )
    after_post = await scrape(client)
    assert after_post[STORED] == before[STORED] + 1
    assert 0 < after_post[STORED_SUM] - before[STORED_SUM] < 5

    batch = {"events": [{"id": "cap-1", "room": "c", "speaker": "Lee", "text": "batched"}]}
    response = await client.post("/api/v1/captions", json=batch, headers=POST_AUTH)
    assert response.status == 200, await response.text()

    async def stored() -> bool:
        return (await scrape(client))[STORED] == before[STORED] + 2

    await until(stored)
    again = await client.post("/api/v1/captions", json=batch, headers=POST_AUTH)
    assert (await again.json())["accepted"][0]["duplicate"] is True  # retried: not stored again
    assert (await scrape(client))[STORED] == before[STORED] + 2


def room_at(slug: str, start: datetime, minutes: int = 60, **over: Any) -> dict[str, Any]:
    wall = start.astimezone(UTC).replace(tzinfo=None, microsecond=0)
    schedule = {
        "start": wall.isoformat(),
        "end": (wall + timedelta(minutes=minutes)).isoformat(),
        "timezone": "UTC",
    }
    return room_json(slug, schedule=schedule, **over)


async def test_rooms_by_state_follow_the_rooms_table(aiohttp_client: Any, tmp_path: Path) -> None:
    # join_early_minutes is 15 by default; the gauge refreshes every poll_interval (1 s).
    client = await aiohttp_client(app_for(tmp_path, (), metrics={"poll_interval": 1}))
    now = datetime.now(UTC)
    bodies = [
        room_at("later", now + timedelta(days=2)),
        room_at("doors-open", now + timedelta(minutes=5)),
        room_at("running", now - timedelta(minutes=10)),
        room_at("ending", now - timedelta(minutes=20), minutes=30),
        room_at("over", now - timedelta(days=1)),
        room_at("weekly", now - timedelta(days=7, hours=3)),
    ]
    bodies[-1]["schedule"]["recurrence"] = "weekly"  # between two sessions: scheduled
    for body in bodies:
        created = await client.post("/api/v1/rooms", json=body, headers=ADMIN)
        assert created.status == 201, await created.text()
    want = {"scheduled": 2, "open": 1, "live": 2, "closed": 1}

    def states(values: dict[str, float]) -> dict[str, float]:
        return {s: values[key("plenary_rooms", state=s)] for s in want}

    async def counted() -> bool:
        return states(await scrape(client)) == want

    await until(counted)
    assert (await client.delete("/api/v1/rooms/running", headers=ADMIN)).status == 204

    async def recounted() -> bool:
        return states(await scrape(client)) == {**want, "live": 1}

    await until(recounted)


def test_room_state_boundaries() -> None:
    start = datetime(2030, 3, 1, 10, 0, tzinfo=UTC)
    room = Room(
        **RoomCreate.model_validate(room_at("r", start)).model_dump(),
        created_at=start,
        updated_at=start,
    )
    at = {
        start - timedelta(minutes=16): "scheduled",
        start - timedelta(minutes=15): "open",
        start - timedelta(seconds=1): "open",
        start: "live",
        start + timedelta(minutes=59): "live",
        start + timedelta(minutes=60): "closed",
    }
    assert {now: room.state(now, 15) for now in at} == at
    assert room.state(start - timedelta(minutes=1), 0) == "scheduled"


async def test_login_and_join_are_counted(aiohttp_client: Any, tmp_path: Path) -> None:
    app = app_for(tmp_path, ())
    now = datetime.now(UTC)

    async def seed(app: web.Application) -> None:
        repo = RoomRepository(app[db_key])
        await repo.create(RoomCreate.model_validate(room_at("open", now - timedelta(minutes=5))))
        await repo.create(RoomCreate.model_validate(room_at("shut", now + timedelta(days=3))))
        devs = {"access": [{"kind": "ldap_group", "group": "devs"}], "moderators": []}
        await repo.create(
            RoomCreate.model_validate(room_at("devs", now - timedelta(minutes=5), policy=devs))
        )

    app.on_startup.append(seed)
    client = await aiohttp_client(app)

    async def join(slug: str) -> Any:
        csrf = csrf_of(await (await client.get(f"/r/{slug}")).text())
        return await client.post(
            f"/r/{slug}/join", data={"csrf_token": csrf}, allow_redirects=False
        )

    logins = key("plenary_login_duration_seconds_count", source="ldap")
    admitted = key("plenary_attendees_admitted_total", source="ldap")
    jwts = key("plenary_jwts_issued_total")

    def denied(reason: str) -> str:
        return key("plenary_attendees_denied_total", reason=reason)

    v0 = await scrape(client)
    assert (await login(client, "bob", "wrong")).status == 401
    v1 = await scrape(client)
    assert v1[logins] == v0[logins] + 1
    assert v1[denied("bad_credentials")] == v0.get(denied("bad_credentials"), 0) + 1

    assert (await login(client, "bob", "bob-pw")).status == 303
    r = await join("open")
    assert r.status == 303 and r.headers["Location"].startswith("https://meet.example.org/")
    v2 = await scrape(client)
    assert v2[logins] == v1[logins] + 1
    assert v2[jwts] == v1[jwts] + 1
    assert v2[admitted] == v1[admitted] + 1

    assert (await join("shut")).status == 403
    assert (await join("devs")).status == 403  # bob is not in devs
    v3 = await scrape(client)
    assert v3[denied("room_closed")] == v2.get(denied("room_closed"), 0) + 1
    assert v3[denied("denied")] == v2.get(denied("denied"), 0) + 1
    assert v3[jwts] == v2[jwts] and v3[admitted] == v2[admitted]


@needs_promtool
async def test_live_output_passes_promtool(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await aiohttp_client(app_for(tmp_path))
    await post(client, "lint", {"speaker": "Kim", "text": "one"})
    await client.get("/api/v1/rooms/lint/captions")
    text = await (await client.get("/metrics")).text()
    assert "plenary_caption_store_latency_seconds_bucket" in text
    linted = await asyncio.to_thread(promtool, "check", "metrics", stdin=text)
    assert linted.returncode == 0, linted.stdout + linted.stderr
