"""Captioners correct and type captions, through the real HTTP paths and a real slapd.

Rooms are made over the admin API, captions posted by a producer, people log in with the
login form against slapd; the captioner uses the editing view's forms, the correction
API and a read token; readers follow SSE (live and resuming with Last-Event-ID), the
JSON poll, captions.txt and the transcript exports.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.harness.rooms_helpers import TOKEN as ADMIN
from bench.harness.slapd import Slapd, run_slapd, slapd_binary
from orchestrator.app import create_app
from plenary.settings import load_settings
from tests.captions_helpers import cli_rooms, make_room
from tests.web_helpers import JITSI_SECRET, csrf_of
from tests.web_helpers import Person as Browser

pytestmark = pytest.mark.skipif(slapd_binary() is None, reason="slapd is not installed")

PRODUCER = "producer-token-0123456789"
SERVICE = "relay-token-0123456789"
# alice (LDAP group admins) is the captioner; bob (devs) reads but may not correct.
POLICY = {
    "access": [{"kind": "ldap_group", "group": "devs"}],
    "moderators": [],
    "captioners": [{"kind": "ldap_group", "group": "admins"}],
}
RELAY = {"Authorization": f"Bearer {SERVICE}"}


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with run_slapd(tmp_path_factory.mktemp("slapd")) as server:
        yield server


def settings_for(slapd: Slapd, database: str, **captions: Any) -> Any:
    """``database``: a URL (``database_url``: each backend in turn, tests/pg_fixtures.py)."""
    return load_settings(
        orchestrator={"database_url": database, "admin_token": ADMIN},
        ldap=slapd.settings().model_dump(mode="json"),
        jitsi={"domain": "meet.example.org", "app_secret": JITSI_SECRET},
        captions={"producers": {"cap": PRODUCER}, "service_readers": {"relay": SERVICE},
                  **captions},
    )  # fmt: skip


@pytest.fixture
async def client(aiohttp_client: Any, slapd: Slapd, database_url: str) -> Any:
    client = await aiohttp_client(create_app(settings_for(slapd, database_url)))
    await make_room(client, "hall", policy=POLICY, caption_readers=[{"kind": "anyone"}])
    await make_room(client, "live", policy=POLICY, transcript_retention_days=None)
    return client


class Person(Browser):
    """A logged-in browser that also sends the editing view's forms."""

    async def edit(self, room: str, **fields: str) -> tuple[int, str]:
        """Send one form of the editing view as a browser does; the page it lands on."""
        page = await self.http.get(f"/r/{room}/captions/edit")
        html = await page.text()
        if page.status != 200:
            return page.status, html
        answer = await self.http.post(
            f"/r/{room}/captions/edit", data={"csrf_token": csrf_of(html), **fields}
        )
        return answer.status, await answer.text()


@pytest.fixture
async def people(client: Any) -> AsyncIterator[dict[str, Person]]:
    crowd = {name: Person(client) for name in ("alice", "bob")}
    for name, person in crowd.items():
        await person.login(name)
    yield crowd
    for person in crowd.values():
        await person.close()


async def post(client: Any, room: str, *texts: str) -> list[int]:
    stamp = time.time_ns()
    events = [{"id": f"{room}-{stamp}-{n}", "room": room, "speaker": "Kim", "language": "ko",
               "text": text, "end": 1.0} for n, text in enumerate(texts)]  # fmt: skip
    response = await client.post(
        "/api/v1/captions", json={"events": events},
        headers={"Authorization": f"Bearer {PRODUCER}"},
    )  # fmt: skip
    assert response.status == 200, await response.text()
    return [a["seq"] for a in (await response.json())["accepted"]]


async def sse_events(
    client: Any, room: str, count: int, headers: dict[str, str], seconds: float = 5
) -> list[tuple[str, str, dict[str, Any]]]:
    """(id, event, data) of the first ``count`` events of the room's SSE stream; fewer
    when the stream stays quiet for ``seconds``."""
    found: list[tuple[str, str, dict[str, Any]]] = []
    async with client.get(f"/r/{room}/captions/stream", headers=headers) as response:
        assert response.status == 200
        block: dict[str, str] = {}
        try:
            async with asyncio.timeout(seconds):
                while len(found) < count:
                    raw = await response.content.readline()
                    if not raw:
                        break
                    line = raw.decode().rstrip("\n")
                    if line == "":
                        if "data" in block and block.get("event") != "partial":
                            found.append((block.get("id", ""), block.get("event", ""),
                                          json.loads(block["data"])))  # fmt: skip
                        block = {}
                    elif ":" in line and not line.startswith(":"):
                        key, _, value = line.partition(":")
                        block[key] = value.strip()
        except TimeoutError:
            pass
    return found


async def test_a_correction_reaches_every_reader_once(
    client: Any, people: dict[str, Person]
) -> None:
    seqs = await post(client, "hall", "오늘의 발표자는 김 교수입니다.", "회의를 시작합니다.")
    # A reader follows live; another left after the captions and resumes later.
    live = asyncio.create_task(
        sse_events(client, "hall", 1, {**RELAY, "Last-Event-ID": str(seqs[-1])})
    )
    await asyncio.sleep(0.3)
    status, html = await people["alice"].edit(
        "hall",
        action="correct",
        seq=str(seqs[0]),
        speaker="Kim <b>&",
        text="오늘의 발표자는 <script>alert(1)</script> 金 교수입니다.\r\nPRIVMSG #x :hi\x00",
    )
    assert status == 200 and f"Line {seqs[0]} corrected (revision 1)." in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    fixed = "오늘의 발표자는 <script>alert(1)</script> 金 교수입니다. PRIVMSG #x :hi"

    (got,) = await live  # the live reader: one correction, nothing else
    pos, event, data = got
    assert event == "correction" and data["seq"] == seqs[0] and data["revision"] == 1
    assert data["text"] == fixed and data["speaker"] == "Kim <b>&" and data["by"] == "ldap:alice"
    assert int(pos) == data["pos"] > seqs[-1]

    # Resuming after the last caption: the correction once, then the next caption.
    await post(client, "hall", "다음 순서입니다.")
    resumed = await sse_events(client, "hall", 5, {**RELAY, "Last-Event-ID": str(seqs[-1])}, 1)
    assert [(e, d.get("seq")) for _, e, d in resumed] == [
        ("correction", seqs[0]), ("caption", int(pos) + 1)]  # fmt: skip
    # Resuming after the correction: it is not repeated.
    after = await sse_events(client, "hall", 5, {**RELAY, "Last-Event-ID": pos}, 1)
    assert [e for _, e, _ in after] == ["caption"]

    # JSON poll: the latest revision, and the correction after the reader's mark.
    poll = await (await client.get("/api/v1/rooms/hall/captions?after=0", headers=RELAY)).json()
    assert poll["events"][0]["text"] == fixed and poll["events"][0]["revision"] == 1
    assert [c["seq"] for c in poll["corrections"]] == [seqs[0]]
    later = await (await client.get(f"/api/v1/rooms/hall/captions?after={pos}")).json()
    assert later["corrections"] == [] and len(later["events"]) == 1

    # captions.txt says it as the IRC relay would, on one line.
    async with client.get(f"/r/hall/captions.txt?after={seqs[-1]}") as response:
        text = (await response.content.readline()).decode()
        text += (await response.content.readline()).decode()
    assert f"* correction: <Kim <b>&> {fixed}\n" in text

    # The transcript: corrected text, marked, escaped; the JSON export keeps the history.
    sessions = await (await client.get("/r/hall/transcripts")).text()
    pid = re.search(r'href="/pid/([^"]+)"', sessions)
    assert pid
    page = await (await client.get(f"/pid/{pid.group(1)}", headers={"Accept": "text/html"})).text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; 金 교수입니다." in page and "(corrected)" in page
    assert "<script>alert" not in page
    export = await (await client.get(f"/pid/{pid.group(1)}.json")).json()
    first = export["captions"][0]
    assert first["text"] == fixed and first["revision"] == 1
    assert first["history"] == [
        {"pos": int(pos), "seq": seqs[0], "revision": 1, "text": fixed,
         "speaker": "Kim <b>&", "by": "ldap:alice", "at": data["at"],
         "old_text": "오늘의 발표자는 김 교수입니다.", "old_speaker": "Kim"}
    ]  # fmt: skip
    vtt = await (await client.get(f"/pid/{pid.group(1)}.vtt")).text()
    assert "金 교수" in vtt

    # Undo: a new revision puts the old text back; history keeps all three.
    status, html = await people["alice"].edit("hall", action="undo")
    assert "undone (revision 2)" in html
    export = await (await client.get(f"/pid/{pid.group(1)}.json")).json()
    assert export["captions"][0]["text"] == "오늘의 발표자는 김 교수입니다."
    assert [h["revision"] for h in export["captions"][0]["history"]] == [1, 2]


async def test_only_captioners_correct(client: Any, people: dict[str, Person]) -> None:
    (seq,) = await post(client, "hall", "원래 문장")
    # The captions page links the editing view for captioners only.
    assert (
        'href="captions/edit"' in await (await people["alice"].http.get("/r/hall/captions")).text()
    )
    assert "captions/edit" not in await (await people["bob"].http.get("/r/hall/captions")).text()
    assert "captions/edit" not in await (await client.get("/r/hall/captions")).text()
    # bob reads the room but is no captioner: the editing view and its forms refuse him.
    status, html = await people["bob"].edit("hall", action="correct", seq=str(seq), text="x")
    assert status == 403 and "not a captioner" in html
    page = await people["bob"].http.get("/r/hall/captions/edit")
    assert page.status == 403
    bob_csrf = csrf_of(await (await people["bob"].http.get("/login")).text())
    api = await people["bob"].http.post(
        f"/api/v1/rooms/hall/captions/{seq}/corrections", json={"text": "x"},
        headers={"X-CSRF-Token": bob_csrf},
    )  # fmt: skip
    assert api.status == 403 and api.content_type == "application/problem+json"
    # Nobody logged in, a service token: refused.
    assert (await client.post(f"/api/v1/rooms/hall/captions/{seq}/corrections",
                              json={"text": "x"})).status == 401  # fmt: skip
    assert (await client.post(f"/api/v1/rooms/hall/captions/{seq}/corrections",
                              json={"text": "x"}, headers=RELAY)).status == 401  # fmt: skip
    # The operators' admin token may correct (recorded as admin).
    as_admin = await client.post(f"/api/v1/rooms/hall/captions/{seq}/corrections",
                                 json={"text": "원래 문장."}, headers={"Authorization":
                                 f"Bearer {ADMIN}"})  # fmt: skip
    assert as_admin.status == 200 and (await as_admin.json())["by"] == "admin"
    # CSRF: alice's form without its token, her API call without X-CSRF-Token.
    form = await people["alice"].http.post(
        "/r/hall/captions/edit", data={"action": "correct", "seq": str(seq), "text": "forged"}
    )
    assert form.status == 403 and "expired" in await form.text()
    api = await people["alice"].http.post(
        f"/api/v1/rooms/hall/captions/{seq}/corrections", json={"text": "forged"}
    )
    assert api.status == 403 and "X-CSRF-Token" in (await api.json())["detail"]
    poll = await (await client.get("/api/v1/rooms/hall/captions?after=0")).json()
    assert [e["text"] for e in poll["events"]] == ["원래 문장."]  # the admin's, no forgery
    assert [c["by"] for c in poll["corrections"]] == ["admin"]
    # With her session's token the API takes it.
    html = await (await people["alice"].http.get("/r/hall/captions/edit")).text()
    ok = await people["alice"].http.post(
        f"/api/v1/rooms/hall/captions/{seq}/corrections", json={"speaker": "Lee"},
        headers={"X-CSRF-Token": csrf_of(html)},
    )  # fmt: skip
    assert ok.status == 200, await ok.text()
    body = await ok.json()
    assert body["speaker"] == "Lee" and body["text"] == "원래 문장." and body["revision"] == 2


async def test_limits_and_bad_input(client: Any, people: dict[str, Person]) -> None:
    (seq,) = await post(client, "hall", "짧은 문장")
    page = await (await people["alice"].http.get("/r/hall/captions/edit")).text()
    csrf = {"X-CSRF-Token": csrf_of(page)}
    url = f"/api/v1/rooms/hall/captions/{seq}/corrections"
    too_long = await people["alice"].http.post(url, json={"text": "가" * 2001}, headers=csrf)
    assert too_long.status == 400 and "at most 2000" in (await too_long.json())["detail"]
    surrogate = await people["alice"].http.post(
        url, data=b'{"text": "\\ud800"}', headers={**csrf, "Content-Type": "application/json"}
    )
    assert surrogate.status == 400 and "text" in (await surrogate.json())["detail"]
    empty = await people["alice"].http.post(url, json={"text": " \x00 "}, headers=csrf)
    assert empty.status == 400
    missing = await people["alice"].http.post(
        "/api/v1/rooms/hall/captions/99999/corrections", json={"text": "x"}, headers=csrf
    )
    assert missing.status == 404
    # The form says why instead of losing the page.
    status, html = await people["alice"].edit("hall", action="correct", seq=str(seq),
                                              text="나" * 2001)  # fmt: skip
    assert status == 200 and "Not done: text: at most 2000 characters" in html
    poll = await (await client.get("/api/v1/rooms/hall/captions?after=0")).json()
    assert poll["events"][0]["text"] == "짧은 문장"  # nothing accepted was lost


async def test_correction_window(aiohttp_client: Any, slapd: Slapd, database_url: str) -> None:
    client = await aiohttp_client(create_app(settings_for(slapd, database_url,
                                                          correction_window_hours=0)))  # fmt: skip
    await make_room(client, "hall", policy=POLICY, caption_readers=[{"kind": "anyone"}])
    await make_room(client, "live", policy=POLICY, transcript_retention_days=None)
    auth = {"Authorization": f"Bearer {ADMIN}"}
    for room in ("hall", "live"):
        (seq,) = await post(client, room, "지난 회의")
        await asyncio.sleep(0.01)
        late = await client.post(f"/api/v1/rooms/{room}/captions/{seq}/corrections",
                                 json={"text": "늦은 수정"}, headers=auth)  # fmt: skip
        assert late.status == 409, await late.text()
        assert "correction window" in (await late.json())["detail"]
        poll = await (
            await client.get(f"/api/v1/rooms/{room}/captions?after=0", headers=RELAY)
        ).json()
        assert poll["events"][0]["text"] == "지난 회의" and poll["corrections"] == []


async def test_rate_limit(aiohttp_client: Any, slapd: Slapd, tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'fix.sqlite3'}"  # not a store test: one backend
    app = create_app(settings_for(slapd, database, corrections_per_minute=2))
    client = await aiohttp_client(app)
    await make_room(client, "hall", policy=POLICY, caption_readers=[{"kind": "anyone"}])
    (seq,) = await post(client, "hall", "하나")
    alice = Person(client)
    try:
        await alice.login("alice")
        page = await (await alice.http.get("/r/hall/captions/edit")).text()
        url = f"/api/v1/rooms/hall/captions/{seq}/corrections"
        statuses = [
            (await alice.http.post(url, json={"text": f"둘 {n}"},
                                   headers={"X-CSRF-Token": csrf_of(page)})).status
            for n in range(3)
        ]  # fmt: skip
        assert statuses == [200, 200, 429]
    finally:
        await alice.close()


async def test_software_pushes_with_a_captioners_token(
    client: Any, people: dict[str, Person]
) -> None:
    room_page = await (await people["alice"].http.get("/r/hall")).text()
    made = await people["alice"].http.post(
        "/r/hall/read-tokens", data={"csrf_token": csrf_of(room_page), "days": "1"}
    )
    found = re.search(r"<code>(plr_[A-Za-z0-9_-]+)</code>", await made.text())
    assert found
    auth = {"Authorization": f"Bearer {found.group(1)}"}
    lines = "첫째 줄\n\n둘째 줄 \x01\n"
    pushed = await client.post(
        "/api/v1/rooms/hall/captions/typed?speaker=Park", data=lines.encode(),
        headers={**auth, "Content-Type": "text/plain; charset=utf-8"},
    )  # fmt: skip
    assert pushed.status == 202, await pushed.text()
    seqs = (await pushed.json())["accepted"]
    assert len(seqs) == 2
    fix = await client.post(f"/api/v1/rooms/hall/captions/{seqs[1]}/corrections",
                            json={"text": "둘째 줄입니다"}, headers=auth)  # fmt: skip
    assert fix.status == 200
    async with client.ws_connect("/api/v1/rooms/hall/captions/typed/ws?speaker=Park",
                                 headers=auth) as ws:  # fmt: skip
        await ws.send_str("셋째 줄")
        assert "seq" in await ws.receive_json(timeout=5)
        await ws.send_str(json.dumps({"text": "넷째", "speaker": "Choi"}))
        assert "seq" in await ws.receive_json(timeout=5)
        await ws.send_str("가" * 2001)
        assert "at most 2000" in (await ws.receive_json(timeout=5))["error"]
    poll = await (await client.get("/api/v1/rooms/hall/captions?after=0")).json()
    assert [(e["speaker"], e["text"]) for e in poll["events"]] == [
        ("Park", "첫째 줄"),
        ("Park", "둘째 줄입니다"),
        ("Park", "셋째 줄"),
        ("Choi", "넷째"),
    ]
    # bob's token is a read token too, but bob is no captioner.
    room_page = await (await people["bob"].http.get("/r/hall")).text()
    made = await people["bob"].http.post(
        "/r/hall/read-tokens", data={"csrf_token": csrf_of(room_page), "days": "1"}
    )
    bobs = re.search(r"<code>(plr_[A-Za-z0-9_-]+)</code>", await made.text())
    assert bobs
    refused = await client.post(
        "/api/v1/rooms/hall/captions/typed", data=b"x",
        headers={"Authorization": f"Bearer {bobs.group(1)}", "Content-Type": "text/plain"},
    )  # fmt: skip
    assert refused.status == 403


async def test_live_only_room_corrections_resume(client: Any, people: dict[str, Person]) -> None:
    seqs = await post(client, "live", "기록 없는 방", "두 번째")
    status, html = await people["alice"].edit("live", action="correct", seq=str(seqs[0]),
                                              speaker="Kim", text="기록하지 않는 방")  # fmt: skip
    assert "corrected (revision 1)" in html
    resumed = await sse_events(client, "live", 5, {**RELAY, "Last-Event-ID": str(seqs[-1])}, 1)
    assert [(e, d["seq"], d["text"]) for _, e, d in resumed] == [
        ("correction", seqs[0], "기록하지 않는 방")]  # fmt: skip
    poll = await (await client.get("/api/v1/rooms/live/captions?after=0", headers=RELAY)).json()
    assert poll["events"][0]["text"] == "기록하지 않는 방"


async def test_openapi_documents_the_captioner_endpoints(client: Any) -> None:
    from openapi_spec_validator import validate

    doc = await (await client.get("/api/v1/openapi.json")).json()
    validate(doc)
    for path, method in [
        ("/api/v1/rooms/{room}/captions/{seq}/corrections", "post"),
        ("/api/v1/rooms/{room}/captions/typed", "post"),
        ("/api/v1/rooms/{room}/captions/typed/ws", "get"),
    ]:
        assert method in doc["paths"][path], path
    body = doc["paths"]["/api/v1/rooms/{room}/captions/typed"]["post"]["requestBody"]
    assert "text/plain" in body["content"]
    assert {"captioner", "captioner_session"} <= set(doc["components"]["securitySchemes"])


async def test_captioners_set_with_the_cli(
    aiohttp_client: Any, slapd: Slapd, database_url: str
) -> None:
    """``plenary rooms create --policy`` takes captioners; alice may correct, bob not."""
    cli_rooms(database_url, "clihall", policy=json.dumps(POLICY))
    client = await aiohttp_client(create_app(settings_for(slapd, database_url)))
    room = await (
        await client.get("/api/v1/rooms/clihall", headers={"Authorization": f"Bearer {ADMIN}"})
    ).json()
    assert room["policy"]["captioners"] == POLICY["captioners"]
    (seq,) = await post(client, "clihall", "하나")
    crowd = {name: Person(client) for name in ("alice", "bob")}
    try:
        for name, person in crowd.items():
            await person.login(name)
            status, html = await person.edit("clihall", action="correct", seq=str(seq), text="둘")
            assert status == (200 if name == "alice" else 403), (name, html)
    finally:
        for person in crowd.values():
            await person.close()
    with pytest.raises(AssertionError):  # an invalid captioner rule is refused by the CLI
        cli_rooms(database_url, "bad", policy='{"captioners": [{"kind": "x"}]}')
