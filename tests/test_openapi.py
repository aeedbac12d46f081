"""The OpenAPI document: valid (openapi-spec-validator), naming every route programs use,
and every operation in it exercised over HTTP with an answer whose status it documents."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from bench.harness.rooms_helpers import AUTH as ADMIN
from bench.harness.rooms_helpers import TOKEN as ADMIN_TOKEN
from bench.harness.rooms_helpers import room_json
from orchestrator.app import create_app
from plenary.settings import load_settings
from tests.captions_helpers import make_room
from tests.fake_prosody import FakeProsody, Room

PRODUCER = {"Authorization": "Bearer producer-0123456789"}
READER = {"Authorization": "Bearer service-0123456789"}
JIGASI = "jigasi-0123456789"
PROSODY = "prosody-0123456789"
# Pages for people with forms (login, room editing, joining): not part of the API.
BROWSER_ONLY = re.compile(
    r"^/($|rooms|schedule|login|logout|static|r/\{slug\}|r/\{room\}/captions/edit)"
)


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> Any:
    settings = load_settings(
        orchestrator={"database": tmp_path / "api.sqlite3", "admin_token": ADMIN_TOKEN},
        captions={
            "producers": {"cap": PRODUCER["Authorization"][7:]},
            "service_readers": {"relay": READER["Authorization"][7:]},
            "jigasi_secret": JIGASI,
            "event_sync_secret": PROSODY,
        },
    )
    client = await aiohttp_client(create_app(settings))
    await make_room(client, "open")
    return client


def operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    methods = {"get", "put", "post", "patch", "delete"}
    return {(m.upper(), p) for p, item in doc["paths"].items() for m in item if m in methods}


async def test_every_route_is_documented(client: Any) -> None:
    doc = await (await client.get("/api/v1/openapi.json")).json()
    validate(doc)
    documented = operations(doc)
    for route in client.app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if route.method == "HEAD" or BROWSER_ONLY.match(path) or "/read-tokens" in path:
            continue
        if path == "/api/v1/events/{kind}":  # one route, a documented path per event kind
            assert any(p.startswith("/api/v1/events/") for _, p in documented)
            continue
        assert (route.method, path) in documented, (route.method, path)
    schema = doc["components"]["schemas"]["Problem"]
    assert {"title", "status", "detail"} <= set(schema["required"])


async def test_every_documented_operation_answers_as_documented(client: Any) -> None:
    doc = await (await client.get("/api/v1/openapi.json")).json()
    done: set[tuple[str, str]] = set()

    async def call(method: str, template: str, url: str, want: int, **kw: Any) -> Any:
        response = await client.request(method, url, allow_redirects=False, **kw)
        documented = doc["paths"][template][method.lower()]["responses"]
        assert str(response.status) in documented, (method, url, response.status)
        assert response.status == want, (method, url, await response.text())
        if response.status >= 400 and response.status != 410:  # 410: the stub itself
            assert response.content_type == "application/problem+json", (method, url)
        done.add((method, template))
        if url.endswith(("/stream", "captions.txt")):
            response.close()
            return None
        return response

    made = room_json("made")
    await call("GET", "/api/v1/openapi.json", "/api/v1/openapi.json", 200)
    await call("GET", "/healthz", "/healthz", 200)
    await call("GET", "/calendar.ics", "/calendar.ics?lang=ko", 200)
    await call("GET", "/metrics", "/metrics", 200)
    await call("GET", "/api/v1/rooms", "/api/v1/rooms", 200)
    await call("POST", "/api/v1/rooms", "/api/v1/rooms", 401, json=made)
    await call("POST", "/api/v1/rooms", "/api/v1/rooms", 201, json=made, headers=ADMIN)
    await call("POST", "/api/v1/rooms", "/api/v1/rooms", 409, json=made, headers=ADMIN)
    one = "/api/v1/rooms/{slug}"
    await call("GET", one, "/api/v1/rooms/made", 200)
    await call("GET", one, "/api/v1/rooms/none", 404)
    fields = {k: v for k, v in made.items() if k != "slug"}
    await call("PUT", one, "/api/v1/rooms/made", 200, json=fields, headers=ADMIN)
    await call("PATCH", one, "/api/v1/rooms/made", 400, json={"title": ""}, headers=ADMIN)
    await call("PATCH", one, "/api/v1/rooms/made", 200, json={"title": "M"}, headers=ADMIN)
    await call("GET", "/api/v1/rooms/{slug}/schedule", "/api/v1/rooms/made/schedule", 200)
    await call("GET", "/api/v1/schedule", "/api/v1/schedule?tz=Asia/Seoul", 200)
    await call("DELETE", one, "/api/v1/rooms/made", 204, headers=ADMIN)

    # Producers.
    event = {"id": "e1", "room": "open", "speaker": "Kim", "text": "열린 방"}
    stray = {"id": "e2", "room": "nowhere", "speaker": "Kim", "text": "x"}
    batch = await call("POST", "/api/v1/captions", "/api/v1/captions", 200,
                       json={"events": [event, stray]}, headers=PRODUCER)  # fmt: skip
    results = (await batch.json())["accepted"]
    assert [r["status"] for r in results] == [200, 404]
    await call("POST", "/api/v1/captions", "/api/v1/captions", 401, json={"events": []})
    per_room = "/api/v1/rooms/{room}/captions"
    await call("POST", per_room, "/api/v1/rooms/open/captions", 202,
               json={"speaker": "Lee", "text": "둘"}, headers=PRODUCER)  # fmt: skip
    await call("POST", per_room, "/api/v1/rooms/nowhere/captions", 404,
               json={"speaker": "Lee", "text": "둘"}, headers=PRODUCER)  # fmt: skip
    jid = "open@conference.meet.example.org"
    jigasi = {"event": "SPEECH", "room_name": jid, "timestamp": 1, "language": "ko",
              "participant": {"id": "p1", "name": "Ana"}, "is_interim": False,
              "transcript": [{"text": "지가시", "confidence": 0.9}],
              "message_id": "j1"}  # fmt: skip
    jigasi_headers = {"Content-Type": "application/json", "X-Plenary-Secret": JIGASI}
    await call("POST", "/api/v1/jigasi", "/api/v1/jigasi", 200, data=json.dumps(jigasi),
               headers=jigasi_headers)  # fmt: skip
    await call("POST", "/api/v1/jigasi/{secret}", f"/api/v1/jigasi/{JIGASI}", 200,
               data=json.dumps({**jigasi, "message_id": "j2"}),
               headers={"Content-Type": "application/json"})  # fmt: skip
    await call("POST", "/api/v1/jigasi/{secret}", "/api/v1/jigasi/wrong", 403,
               data=json.dumps(jigasi), headers={"Content-Type": "application/json"})  # fmt: skip

    # Prosody's event posts, as its modules send them.
    sent: list[Any] = []

    class Recording:
        async def post(self, path: str, **kw: Any) -> Any:
            kind = path.removeprefix("/api/v1/events/")
            response = await call("POST", f"/api/v1/events/{kind}", path, 202, **kw)
            sent.append(response)
            return response

    prosody = FakeProsody(Recording(), PROSODY)
    room = Room("open")
    await prosody.room_created(room)
    await prosody.occupant_joined(room, "a1b2c3d4", {"id": "ldap:ana", "name": "Ana"})
    await prosody.occupant_left(room, "a1b2c3d4")
    await prosody.room_destroyed(room)
    assert len(sent) == 4

    # Readers: a public room, so anyone.
    poll = await call("GET", per_room, "/api/v1/rooms/open/captions?after=0", 200)
    pid = (await poll.json())["events"][0]["session"]
    await call("GET", per_room, "/api/v1/rooms/open/captions?after=x", 400)
    await call("GET", "/r/{room}/captions", "/r/open/captions", 200)
    await call("GET", "/r/{room}/captions.txt", "/r/open/captions.txt", 200)
    await call("GET", "/r/{room}/captions/stream", "/r/open/captions/stream", 200)
    await call("GET", "/r/{room}/transcripts", "/r/open/transcripts", 200)
    await call("GET", "/r/{room}/captions", "/r/nowhere/captions", 404)
    await call("GET", "/pid/{pid}", f"/pid/{pid}", 200)
    await call("GET", "/pid/{pid}", f"/pid/{pid}", 406, headers={"Accept": "image/png"})
    for ext in ("txt", "vtt", "srt", "json"):
        await call("GET", "/pid/{pid}.{ext}", f"/pid/{pid}.{ext}", 200)
    await call("GET", "/pid/{pid}.{ext}", "/pid/2222-2222-2222.txt", 404)

    # IRC channels (service readers; the admin rotates keys).
    await call("GET", "/api/v1/irc/channels", "/api/v1/irc/channels", 200, headers=READER)
    await call("GET", "/api/v1/irc/channels", "/api/v1/irc/channels", 401)
    state = "/api/v1/irc/channels/{room}/state"
    await call("PUT", state, "/api/v1/irc/channels/open/state", 204,
               json={"protected": True, "detail": ""}, headers=READER)  # fmt: skip
    key = "/api/v1/irc/channels/{room}/key"
    await call("POST", key, "/api/v1/irc/channels/open/key", 200, headers=ADMIN)
    # Relays: a channel's lease (one holder at a time) and a room's delivered position.
    lease = "/api/v1/irc/leases/{channel}"
    await call("POST", lease, "/api/v1/irc/leases/%23open", 200,
               json={"holder": "r1", "ttl": 5}, headers=READER)  # fmt: skip
    other = await call("POST", lease, "/api/v1/irc/leases/%23open", 409,
                       json={"holder": "r2"}, headers=READER)  # fmt: skip
    assert (await other.json())["holder"] == "r1"
    await call("POST", lease, "/api/v1/irc/leases/%23open", 400,
               json={"holder": "r2", "ttl": 0}, headers=READER)  # fmt: skip
    await call("POST", lease, "/api/v1/irc/leases/%23open", 401, json={"holder": "r2"})
    await call("DELETE", lease, "/api/v1/irc/leases/%23open?holder=r1", 200, headers=READER)
    position = "/api/v1/irc/positions/{room}"
    await call("PUT", position, "/api/v1/irc/positions/open", 200,
               json={"position": 7}, headers=READER)  # fmt: skip
    lower = await call("PUT", position, "/api/v1/irc/positions/open", 200,
                       json={"position": 3}, headers=READER)  # fmt: skip
    assert (await lower.json())["position"] == 7  # never lowered
    got = await call("GET", position, "/api/v1/irc/positions/open", 200, headers=READER)
    assert (await got.json())["position"] == 7
    await call("GET", position, "/api/v1/irc/positions/open", 401)

    # Captioners (the admin token may act as one): a correction, typed lines, the websocket.
    seq = (await poll.json())["events"][0]["seq"]
    fix = "/api/v1/rooms/{room}/captions/{seq}/corrections"
    await call("POST", fix, f"/api/v1/rooms/open/captions/{seq}/corrections", 401,
               json={"text": "고친 말"})  # fmt: skip
    await call("POST", fix, f"/api/v1/rooms/open/captions/{seq}/corrections", 200,
               json={"text": "고친 말"}, headers=ADMIN)  # fmt: skip
    typed = "/api/v1/rooms/{room}/captions/typed"
    await call("POST", typed, "/api/v1/rooms/open/captions/typed", 202,
               data="타자로 친 자막\n".encode(),
               headers={**ADMIN, "Content-Type": "text/plain; charset=utf-8"})  # fmt: skip
    await call("GET", "/api/v1/rooms/{room}/captions/typed/ws",
               "/api/v1/rooms/open/captions/typed/ws", 401)  # fmt: skip

    # Withdrawal, last: the admin token.
    gone = "/api/v1/transcripts/{pid}"
    await call("DELETE", gone, f"/api/v1/transcripts/{pid}", 403, headers=PRODUCER)
    await call("DELETE", gone, f"/api/v1/transcripts/{pid}", 204, headers=ADMIN)
    await call("GET", "/pid/{pid}", f"/pid/{pid}", 410)
    await call("DELETE", gone, "/api/v1/transcripts/2222-2222-2222", 404, headers=ADMIN)

    missing = operations(doc) - done
    assert not missing, f"documented but never exercised: {sorted(missing)}"
