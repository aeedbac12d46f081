"""Who reads a room's captions and transcripts, through the real HTTP paths and a real slapd.

Rooms are made over the admin API, captions posted over the producer API, people log in
with the login form against slapd, and read tokens are made and revoked with the room
page's forms.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import ldap
import pytest

from bench.harness.rooms_helpers import TOKEN as ADMIN
from bench.harness.slapd import (
    GROUPS,
    ROOT_DN,
    ROOT_PASSWORD,
    Slapd,
    run_slapd,
    slapd_binary,
    user_dn,
)
from orchestrator import metrics
from orchestrator.access import read_tokens
from orchestrator.app import create_app
from plenary.settings import load_settings
from tests.captions_helpers import make_room
from tests.web_helpers import JITSI_SECRET, csrf_of
from tests.web_helpers import Person as Browser

pytestmark = pytest.mark.skipif(slapd_binary() is None, reason="slapd is not installed")

PRODUCER = "producer-token-0123456789"
SERVICE = "relay-token-0123456789"
DEVS = {"access": [{"kind": "ldap_group", "group": "devs"}],
        "moderators": [{"kind": "user", "source": "ldap", "name": "alice"}]}  # fmt: skip
HTML = {"Accept": "text/html"}


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with run_slapd(tmp_path_factory.mktemp("slapd")) as server:
        yield server


@pytest.fixture
async def client(aiohttp_client: Any, slapd: Slapd, tmp_path: Path) -> Any:
    settings = load_settings(
        orchestrator={"database": tmp_path / "access.sqlite3", "admin_token": ADMIN},
        ldap=slapd.settings().model_dump(mode="json"),
        jitsi={"domain": "meet.example.org", "app_secret": JITSI_SECRET},
        captions={"producers": {"cap": PRODUCER}, "service_readers": {"relay": SERVICE}},
    )
    client = await aiohttp_client(create_app(settings))
    await make_room(client, "devroom", policy=DEVS, contact="orga@example.org")
    await make_room(client, "talk", policy=DEVS, caption_readers=[{"kind": "anyone"}])
    return client


async def post(client: Any, room: str, *texts: str) -> list[dict[str, Any]]:
    stamp = time.time_ns()
    events = [{"id": f"{room}-{stamp}-{n}", "room": room, "speaker": "Kim", "language": "ko",
               "text": text, "end": 1.0} for n, text in enumerate(texts)]  # fmt: skip
    response = await client.post(
        "/api/v1/captions", json={"events": events},
        headers={"Authorization": f"Bearer {PRODUCER}"},
    )  # fmt: skip
    assert response.status == 200, await response.text()
    accepted: list[dict[str, Any]] = (await response.json())["accepted"]
    return accepted


class Person(Browser):
    """A logged-in browser that also reads pages and makes and revokes read tokens."""

    async def status(self, path: str, headers: dict[str, str] | None = None) -> int:
        async with self.http.get(path, headers=headers, allow_redirects=False) as response:
            return response.status

    async def make_token(self, room: str, days: str = "7") -> str:
        page = await (await self.http.get(f"/r/{room}")).text()
        answer = await self.http.post(
            f"/r/{room}/read-tokens", data={"csrf_token": csrf_of(page), "days": days}
        )
        assert answer.status == 200, await answer.text()
        found = re.search(r"<code>(plr_[A-Za-z0-9_-]+)</code>", await answer.text())
        assert found, "the room page shows no new token"
        return found.group(1)

    async def revoke(self, room: str, token_id: str) -> int:
        page = await (await self.http.get(f"/r/{room}")).text()
        answer = await self.http.post(
            f"/r/{room}/read-tokens/{token_id}/revoke",
            data={"csrf_token": csrf_of(page)},
            allow_redirects=False,
        )
        return answer.status


@pytest.fixture
async def people(client: Any) -> AsyncIterator[dict[str, Person]]:
    crowd = {name: Person(client) for name in ("anonymous", "carol", "bob", "alice")}
    for name in ("carol", "bob", "alice"):
        await crowd[name].login(name)
    yield crowd
    for person in crowd.values():
        await person.close()


def urls(room: str, pid: str) -> list[str]:
    return [
        f"/r/{room}/captions",
        f"/r/{room}/captions.txt",
        f"/r/{room}/captions/stream",
        f"/api/v1/rooms/{room}/captions",
        f"/r/{room}/transcripts",
        f"/pid/{pid}",
        *(f"/pid/{pid}.{ext}" for ext in ("txt", "vtt", "srt", "json")),
    ]


async def test_every_caption_url_follows_the_room_policy(
    client: Any, people: dict[str, Person]
) -> None:
    accepted = await post(client, "devroom", "회의 내용은 비밀입니다")
    assert accepted[0]["status"] == 200
    poll = await client.get(
        "/api/v1/rooms/devroom/captions?after=0", headers={"Authorization": f"Bearer {SERVICE}"}
    )
    assert poll.status == 200
    pid_text = (await poll.json())["events"][0]["session"]
    for url in urls("devroom", pid_text):
        anonymous = await people["anonymous"].status(url)
        assert anonymous == 401, url
        assert await people["anonymous"].status(url, HTML) == 302, url
        assert await people["carol"].status(url) == 403, url
        assert await people["bob"].status(url) == 200, url
        assert await people["alice"].status(url) == 200, url  # the moderator
        assert await people["anonymous"].status(url, {"Authorization": f"Bearer {SERVICE}"}) == 200
        assert await people["anonymous"].status(url, {"Authorization": f"Bearer {ADMIN}"}) == 200


async def test_refusals_say_why_and_whom_to_ask(client: Any, people: dict[str, Person]) -> None:
    anonymous = await people["anonymous"].http.get("/r/devroom/captions.txt")
    assert anonymous.status == 401
    assert anonymous.content_type == "application/problem+json"
    problem = await anonymous.json()
    assert problem["status"] == 401 and "read token" in problem["detail"]
    login = await people["anonymous"].http.get(
        "/r/devroom/captions?size=4", headers=HTML, allow_redirects=False
    )
    assert login.status == 302 and login.headers["Location"].startswith("/login?next=")
    form = await (await people["anonymous"].http.get(login.headers["Location"])).text()
    assert 'name="next" value="/r/devroom/captions?size=4"' in form  # back here after login
    page = await people["carol"].http.get("/r/devroom/captions", headers=HTML)
    text = await page.text()
    assert page.status == 403 and "not a member of LDAP group devs" in text
    assert "orga@example.org" in text and "alice (ldap)" in text
    api = await (await people["carol"].http.get("/api/v1/rooms/devroom/captions")).json()
    assert api["status"] == 403 and "orga@example.org" in api["ask"]


async def test_public_caption_readers_open_a_restricted_room(
    client: Any, people: dict[str, Person]
) -> None:
    await post(client, "talk", "공개 강연입니다")
    poll = await (await client.get("/api/v1/rooms/talk/captions?after=0")).json()
    pid = poll["events"][0]["session"]
    for url in urls("talk", pid):
        assert await people["anonymous"].status(url) == 200, url
    room = await (await people["anonymous"].http.get("/r/talk")).text()
    assert "are public: anyone may read them" in room
    restricted = await (await people["anonymous"].http.get("/r/devroom")).text()
    assert "only for those the room admits" in restricted


async def test_read_tokens(
    client: Any, people: dict[str, Person], monkeypatch: pytest.MonkeyPatch
) -> None:
    await post(client, "devroom", "토큰으로 읽기")
    issued = metrics.READ_TOKENS.labels(event="issued")._value.get()
    used = metrics.READ_TOKENS.labels(event="used")._value.get()
    token = await people["bob"].make_token("devroom")
    assert metrics.READ_TOKENS.labels(event="issued")._value.get() == issued + 1
    anonymous = people["anonymous"]
    bearer = {"Authorization": f"Bearer {token}"}
    txt = await anonymous.http.get(f"/r/devroom/captions.txt?token={token}&after=0")
    assert txt.status == 200
    assert (await txt.content.readline()).startswith(b"-- Live captions of ")
    assert "토큰으로 읽기" in (await txt.content.readline()).decode()
    txt.close()
    assert await anonymous.status("/api/v1/rooms/devroom/captions", bearer) == 200
    assert await anonymous.status(f"/r/devroom/captions?token={token}") == 200
    assert await anonymous.status(f"/r/talk/captions?token={token}") == 403  # its room only
    assert metrics.READ_TOKENS.labels(event="used")._value.get() >= used + 3
    # Expired: the clock moves past its 1 day.
    short = await people["bob"].make_token("devroom", days="1")
    later = read_tokens.now_ms() + 2 * read_tokens.DAY_MS
    monkeypatch.setattr(read_tokens, "now_ms", lambda: later)
    assert await anonymous.status(f"/api/v1/rooms/devroom/captions?token={short}") == 401
    monkeypatch.undo()
    # Listed on the room page: bob sees his own, alice (moderator) sees everyone's.
    mine = await (await people["bob"].http.get("/r/devroom")).text()
    ids = re.findall(r"/r/devroom/read-tokens/(\d+)/revoke", mine)
    assert len(ids) == 2 and "ldap:bob" in mine
    assert await people["carol"].revoke("devroom", ids[-1]) == 403  # not hers
    revoked = metrics.READ_TOKENS.labels(event="revoked")._value.get()
    assert await people["alice"].revoke("devroom", ids[-1]) == 303  # the moderator may
    assert metrics.READ_TOKENS.labels(event="revoked")._value.get() == revoked + 1
    refused = await anonymous.http.get("/api/v1/rooms/devroom/captions", headers=bearer)
    assert refused.status == 401 and "revoked" in (await refused.json())["detail"]
    # A non-member cannot make one.
    page = await (await people["carol"].http.get("/r/devroom")).text()
    assert "Make a read token" not in page
    answer = await people["carol"].http.post(
        "/r/devroom/read-tokens", data={"csrf_token": csrf_of(page), "days": "7"}
    )
    assert answer.status == 403


async def test_policy_changes_apply_to_existing_tokens(
    client: Any, people: dict[str, Person]
) -> None:
    token = await people["bob"].make_token("devroom")
    path = f"/api/v1/rooms/devroom/captions?token={token}"
    assert await people["anonymous"].status(path) == 200
    narrower = {"access": [{"kind": "ldap_group", "group": "admins"}], "moderators": []}
    patched = await client.patch(
        "/api/v1/rooms/devroom", json={"policy": narrower},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )  # fmt: skip
    assert patched.status == 200
    assert await people["anonymous"].status(path) == 403
    assert await people["bob"].status("/api/v1/rooms/devroom/captions") == 403


async def test_transcript_of_a_deleted_room_is_for_admins(
    client: Any, people: dict[str, Person]
) -> None:
    await post(client, "devroom", "지워진 방")
    admin = {"Authorization": f"Bearer {ADMIN}"}
    poll = await (await client.get("/api/v1/rooms/devroom/captions?after=0", headers=admin)).json()
    pid = poll["events"][0]["session"]
    assert (await client.delete("/api/v1/rooms/devroom", headers=admin)).status == 204
    gone = await people["bob"].http.get(f"/pid/{pid}.json")
    assert gone.status == 403 and "deleted" in (await gone.json())["detail"]
    assert await people["anonymous"].status(f"/pid/{pid}.json", admin) == 200
    service = {"Authorization": f"Bearer {SERVICE}"}
    assert await people["anonymous"].status(f"/pid/{pid}.json", service) == 403
    # Withdrawn: the stub is public and says only that.
    withdrawn = await client.delete(f"/api/v1/transcripts/{pid}?reason=Withdrawn.", headers=admin)
    assert withdrawn.status == 204
    stub = await people["anonymous"].http.get(f"/pid/{pid}", headers=HTML)
    text = await stub.text()
    assert stub.status == 410 and "withdrawn" in text and "devroom" not in text
    assert "지워진 방" not in text


async def test_access_log_never_holds_a_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from aiohttp import web

    from plenary.compose.serve import OrchestratorAccessLogger

    caplog.set_level(logging.INFO, logger="aiohttp.access")
    settings = load_settings(orchestrator={"database": tmp_path / "log.sqlite3"})
    runner = web.AppRunner(create_app(settings), access_log_class=OrchestratorAccessLogger)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}/api/v1/rooms/devroom/captions?token=plr_secret1"
            async with http.get(url) as response:
                assert response.status == 401  # not a token this server issued
    finally:
        await runner.cleanup()
    assert "token=redacted" in caplog.text  # the access log saw the URL …
    assert "plr_secret1" not in caplog.text  # … but never the token


async def test_a_member_removed_from_the_group_loses_their_token(
    client: Any, people: dict[str, Person], slapd: Slapd
) -> None:
    token = await people["bob"].make_token("devroom")
    path = f"/api/v1/rooms/devroom/captions?token={token}"
    assert await people["anonymous"].status(path) == 200
    group = f"cn=devs,{GROUPS}"
    admin = ldap.initialize(slapd.url)
    admin.simple_bind_s(ROOT_DN, ROOT_PASSWORD)
    bob = [user_dn("bob").encode()]
    admin.modify_s(group, [(ldap.MOD_DELETE, "member", bob)])
    try:
        refused = await people["anonymous"].http.get(path)
        assert refused.status == 403
        assert "not a member of LDAP group devs" in (await refused.json())["detail"]
    finally:
        admin.modify_s(group, [(ldap.MOD_ADD, "member", bob)])
        admin.unbind_s()
    assert await people["anonymous"].status(path) == 200
