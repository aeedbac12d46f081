"""Login and join end to end: a real slapd, the fake MediaWiki, the real access library.

Attendee → /login (LDAP or wiki) → POST /r/<slug>/join with CSRF → policy → JWT →
303 to Jitsi; the token is decoded with PyJWT and checked claim by claim.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from aiohttp import web

from bench.harness.netutil import free_port
from bench.harness.slapd import PASSWORDS, Slapd, run_slapd, slapd_binary
from orchestrator.app import create_app
from orchestrator.rooms.model import RoomCreate
from orchestrator.rooms.repository import RoomRepository
from plenary.settings import Settings, load_settings
from tests.fake_mediawiki import CLIENT_ID, CLIENT_SECRET, FakeWiki
from tests.web_helpers import JITSI_SECRET, csrf_of, token

pytestmark = pytest.mark.skipif(slapd_binary() is None, reason="slapd is not installed")


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with run_slapd(tmp_path_factory.mktemp("slapd")) as server:
        yield server


def settings_for(tmp_path: Path, ldap: dict[str, Any], wiki_url: str = "") -> Settings:
    wiki: dict[str, Any] = {"enabled": False}
    if wiki_url:
        wiki = {"enabled": True, "url": wiki_url, "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET, "timeout": 2}  # fmt: skip
    return load_settings(
        orchestrator={"database": tmp_path / "join.sqlite3"},
        ldap=ldap,
        wiki=wiki,
        jitsi={"domain": "meet.example.org", "app_secret": JITSI_SECRET},
    )


def open_room(slug: str, policy: dict[str, Any], **over: Any) -> RoomCreate:
    now = datetime.now(UTC).replace(second=0, microsecond=0, tzinfo=None)
    body: dict[str, Any] = {
        "slug": slug, "title": f"Room {slug}", "languages": ["en"],
        "schedule": {"start": (now - timedelta(minutes=5)).isoformat(),
                     "end": (now + timedelta(hours=1)).isoformat(), "timezone": "UTC"},
        "policy": policy, "contact": "orga@example.org",
    }  # fmt: skip
    body.update(over)
    return RoomCreate.model_validate(body)


ROOMS = [
    open_room("devroom", {"access": [{"kind": "ldap_group", "group": "devs"}],
                          "moderators": [{"kind": "user", "source": "ldap", "name": "alice"}]}),
    open_room("admins", {"access": [{"kind": "ldap_group", "group": "admins"}],
                         "moderators": [{"kind": "user", "source": "ldap", "name": "carol"}]}),
    open_room("sysops", {"access": [{"kind": "wiki_group", "group": "sysop"}]}),
    open_room("later", {"access": [{"kind": "anyone"}]}, schedule={
        "start": "2099-01-05T10:00", "end": "2099-01-05T11:00", "timezone": "Asia/Seoul"}),
]  # fmt: skip


async def make_client(aiohttp_client: Any, settings: Settings) -> Any:
    app = create_app(settings)

    async def seed(app: web.Application) -> None:
        from orchestrator.app_keys import db_key

        repo = RoomRepository(app[db_key])
        for room in ROOMS:
            await repo.create(room)

    app.on_startup.append(seed)
    return await aiohttp_client(app)


async def ldap_login(client: Any, username: str, password: str, nxt: str = "/") -> Any:
    csrf = await token(client, "/login")
    return await client.post(
        "/login/ldap",
        data={"username": username, "password": password, "csrf_token": csrf, "next": nxt},
        allow_redirects=False,
    )


async def join(client: Any, slug: str, mode: str = "video") -> Any:
    csrf = csrf_of(await (await client.get(f"/r/{slug}")).text())
    return await client.post(
        f"/r/{slug}/join", data={"csrf_token": csrf, "mode": mode}, allow_redirects=False
    )


def claims_of(location: str, room: str) -> dict[str, Any]:
    parts = urlsplit(location)
    assert parts.scheme == "https" and parts.netloc == "meet.example.org"
    assert parts.path == f"/{room}"
    raw = parse_qs(parts.query)["jwt"][0]
    header = jwt.get_unverified_header(raw)
    assert header == {"alg": "HS256", "typ": "JWT"}
    claims: dict[str, Any] = jwt.decode(
        raw, JITSI_SECRET, algorithms=["HS256"], audience="jitsi", issuer="plenary",
        options={"require": ["exp", "nbf", "iss", "aud", "sub", "room"]},
    )  # fmt: skip
    assert claims["room"] == room and claims["sub"] == "meet.example.org"
    assert 0 < claims["exp"] - datetime.now(UTC).timestamp() <= 300
    return claims


@pytest.fixture
async def ldap_client(aiohttp_client: Any, slapd: Slapd, tmp_path: Path) -> Any:
    settings = settings_for(tmp_path, slapd.settings().model_dump(mode="json"))
    return await make_client(aiohttp_client, settings)


async def test_anonymous_join_goes_to_login_and_back(ldap_client: Any) -> None:
    r = await join(ldap_client, "devroom")
    assert r.status == 303 and r.headers["Location"] == "/login?next=/r/devroom"
    r = await ldap_login(ldap_client, "bob", PASSWORDS["bob"], "/r/devroom")
    assert r.status == 303 and r.headers["Location"] == "/r/devroom"


async def test_member_joins_with_a_valid_token(ldap_client: Any) -> None:
    assert (await ldap_login(ldap_client, "bob", PASSWORDS["bob"])).status == 303
    r = await join(ldap_client, "devroom")
    assert r.status == 303
    claims = claims_of(r.headers["Location"], "devroom")
    user = claims["context"]["user"]
    assert user["moderator"] is False and user["affiliation"] == "member"
    assert user["id"].startswith("ldap:")
    assert claims["context"]["features"]["transcription"] is False
    assert "#" not in r.headers["Location"]


async def test_moderator_and_low_bandwidth(ldap_client: Any) -> None:
    await ldap_login(ldap_client, "alice", PASSWORDS["alice"])
    r = await join(ldap_client, "devroom", mode="low")
    location = r.headers["Location"]
    claims = claims_of(location.split("#")[0], "devroom")
    assert claims["context"]["user"]["affiliation"] == "owner"
    assert claims["context"]["user"]["moderator"] is True
    assert claims["context"]["features"]["transcription"] is True
    fragment = parse_qs(urlsplit(location).fragment)
    assert fragment["config.startAudioOnly"] == ["true"]
    assert fragment["config.channelLastN"] == ["1"]


async def test_denied_attendee_sees_why_and_whom_to_ask(ldap_client: Any) -> None:
    await ldap_login(ldap_client, "bob", PASSWORDS["bob"])
    r = await join(ldap_client, "admins")
    assert r.status == 403
    html = await r.text()
    assert "not a member of LDAP group admins" in html
    assert "orga@example.org" in html and "carol (ldap)" in html
    assert "jwt" not in html


async def test_room_not_open_says_when_it_opens(ldap_client: Any) -> None:
    await ldap_login(ldap_client, "bob", PASSWORDS["bob"])
    r = await join(ldap_client, "later")
    assert r.status == 403
    html = await r.text()
    assert "is not open" in html
    assert "Monday 5 January 2099, 09:45 KST" in html  # 15 minutes early, room's zone
    r = await ldap_client.get("/r/later?tz=Europe/Paris")
    assert "Monday 5 January 2099, 02:00 to 03:00 CET (Europe/Paris)" in await r.text()


async def test_wrong_password_then_rate_limit(ldap_client: Any) -> None:
    for _ in range(5):
        r = await ldap_login(ldap_client, "carol", "wrong")
        assert r.status == 401
        assert "Wrong user name or password." in await r.text()
    r = await ldap_login(ldap_client, "carol", PASSWORDS["carol"])
    assert r.status == 429 and int(r.headers["Retry-After"]) > 0
    assert "Logged in as" not in await (await ldap_client.get("/")).text()


@pytest.mark.parametrize("name", ["*)(uid=*", "*", ")(|(uid=*", "alice\x00"])
async def test_injection_logs_nobody_in(ldap_client: Any, name: str) -> None:
    r = await ldap_login(ldap_client, name, PASSWORDS["alice"])
    assert r.status == 401
    assert "Logged in as" not in await (await ldap_client.get("/")).text()


async def test_directory_down_is_a_503_page(
    aiohttp_client: Any, slapd: Slapd, tmp_path: Path
) -> None:
    dead = slapd.settings(url=f"ldap://127.0.0.1:{free_port()}", timeout=1.0)
    client = await make_client(aiohttp_client, settings_for(tmp_path, dead.model_dump(mode="json")))
    r = await ldap_login(client, "alice", PASSWORDS["alice"])
    assert r.status == 503
    assert "The directory is unavailable" in await r.text()
    assert "Logged in as" not in await (await client.get("/")).text()


# The wiki -----------------------------------------------------------------------------


@pytest.fixture
async def wiki(aiohttp_server: Any) -> tuple[FakeWiki, str]:
    fake = FakeWiki()
    fake.add_user("Wiki admin", groups=["sysop"])
    fake.add_user("Plain user")
    fake.add_user("Vandal", groups=["sysop"], blocked=True)
    server = await aiohttp_server(fake.app())
    return fake, str(server.make_url("")).rstrip("/")


@pytest.fixture
async def wiki_client(aiohttp_client: Any, wiki: tuple[FakeWiki, str], tmp_path: Path) -> Any:
    return await make_client(aiohttp_client, settings_for(tmp_path, {"enabled": False}, wiki[1]))


async def wiki_login(client: Any, fake_url: str, *, state: str | None = None) -> Any:
    csrf = await token(client, "/login")
    r = await client.post("/login/wiki", data={"csrf_token": csrf, "next": "/r/sysops"},
                          allow_redirects=False)  # fmt: skip
    assert r.status == 303
    authorize = r.headers["Location"]
    assert authorize.startswith(fake_url + "/w/rest.php/oauth2/authorize?")
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"] and len(query["state"][0]) >= 40
    async with client.session.get(authorize, allow_redirects=False) as approved:
        back = urlsplit(approved.headers["Location"])
    assert back.path == "/login/wiki/callback"
    params = parse_qs(back.query)
    if state is not None:
        params["state"] = [state]
    return await client.get("/login/wiki/callback",
                            params={k: v[0] for k, v in params.items()},
                            allow_redirects=False)  # fmt: skip


async def test_wiki_login_and_join(wiki_client: Any, wiki: tuple[FakeWiki, str]) -> None:
    fake, url = wiki
    fake.login_as = "Wiki admin"
    r = await wiki_login(wiki_client, url)
    assert r.status == 303 and r.headers["Location"] == "/r/sysops"
    assert "Logged in as Wiki admin" in await (await wiki_client.get("/")).text()
    r = await join(wiki_client, "sysops")
    claims = claims_of(r.headers["Location"], "sysops")
    assert claims["context"]["user"]["name"] == "Wiki admin"
    for c in wiki_client.session.cookie_jar:  # the wiki's token never reaches the browser
        assert not any(t in str(c.value) for t in fake.tokens)


async def test_wiki_state_mismatch_is_refused(wiki_client: Any, wiki: tuple[FakeWiki, str]) -> None:
    fake, url = wiki
    fake.login_as = "Wiki admin"
    r = await wiki_login(wiki_client, url, state="forged-state")
    assert r.status == 400
    assert "could not be verified" in await r.text()
    assert "Logged in as" not in await (await wiki_client.get("/")).text()
    assert not any("access_token" in line for line in fake.requests)


async def test_wiki_down_is_a_503_page(wiki_client: Any, wiki: tuple[FakeWiki, str]) -> None:
    fake, url = wiki
    fake.login_as = "Wiki admin"
    csrf = await token(wiki_client, "/login")
    r = await wiki_client.post("/login/wiki", data={"csrf_token": csrf}, allow_redirects=False)
    async with wiki_client.session.get(r.headers["Location"], allow_redirects=False) as ok:
        back = urlsplit(ok.headers["Location"])
    fake.down = True
    r = await wiki_client.get(f"/login/wiki/callback?{back.query}", allow_redirects=False)
    assert r.status == 503
    assert "The wiki is unavailable" in await r.text()


async def test_blocked_and_outsider_wiki_users_are_denied(
    wiki_client: Any, wiki: tuple[FakeWiki, str]
) -> None:
    fake, url = wiki
    fake.login_as = "Vandal"
    await wiki_login(wiki_client, url)
    r = await join(wiki_client, "sysops")
    assert r.status == 403 and "blocked" in await r.text()
    wiki_client.session.cookie_jar.clear()
    fake.login_as = "Plain user"
    await wiki_login(wiki_client, url)
    r = await join(wiki_client, "sysops")
    assert r.status == 403 and "not a member of wiki group sysop" in await r.text()
