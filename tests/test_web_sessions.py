"""Sessions and CSRF: encrypted cookies, tampering, Secure flag, tokens on every form."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from orchestrator.app import create_app
from orchestrator.web.sessions import COOKIE
from orchestrator.web.web_keys import directory_key
from tests.web_helpers import FakeDirectory, login, token, web_settings


def make_app(tmp_path: Path, **orchestrator: Any) -> web.Application:
    app = create_app(web_settings(tmp_path, **orchestrator))
    app[directory_key] = FakeDirectory()
    return app


def set_cookie(client: Any, value: str) -> None:
    client.session.cookie_jar.clear()
    client.session.cookie_jar.update_cookies({COOKIE: value}, response_url=client.make_url("/"))


def cookie(client: Any) -> str:
    for c in client.session.cookie_jar:
        if c.key == COOKIE:
            return str(c.value)
    raise AssertionError("no session cookie")


async def test_cookie_attributes_and_encryption(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await aiohttp_client(make_app(tmp_path))
    r = await client.get("/login")
    header = r.headers["Set-Cookie"]
    assert header.startswith(f"{COOKIE}=")
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Secure" not in header
    assert "csrf" not in cookie(client)  # encrypted: the token is not readable
    assert (await login(client, "alice", "alice-pw")).status == 303
    assert "alice" not in cookie(client)
    home = await (await client.get("/")).text()
    assert "Logged in as Alice" in home


async def test_secure_when_public_url_is_https(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await aiohttp_client(make_app(tmp_path, public_url="https://events.example.org"))
    r = await client.get("/login")
    assert "Secure" in r.headers["Set-Cookie"]


async def test_flipped_byte_gives_a_new_anonymous_session(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await aiohttp_client(make_app(tmp_path))
    assert (await login(client, "alice", "alice-pw")).status == 303
    good = cookie(client)
    assert "Logged in as Alice" in await (await client.get("/")).text()
    middle = len(good) // 2
    flipped = good[:middle] + ("A" if good[middle] != "A" else "B") + good[middle + 1 :]
    set_cookie(client, flipped)
    page = await (await client.get("/")).text()
    assert "Logged in as" not in page and 'href="/login"' in page
    assert cookie(client) != flipped  # a fresh session was issued


async def test_generated_key_survives_a_restart(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await aiohttp_client(make_app(tmp_path))
    assert (await login(client, "alice", "alice-pw")).status == 303
    saved = cookie(client)
    await client.close()
    db = sqlite3.connect(tmp_path / "web.sqlite3")
    keys = db.execute("SELECT value FROM kv WHERE key = 'session_secret_key'").fetchall()
    assert len(keys) == 1 and len(keys[0][0]) == 44
    again = await aiohttp_client(make_app(tmp_path))
    set_cookie(again, saved)
    assert "Logged in as Alice" in await (await again.get("/")).text()


async def test_configured_key_is_used(aiohttp_client: Any, tmp_path: Path) -> None:
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode()
    client = await aiohttp_client(make_app(tmp_path, secret_key=key))
    await client.get("/login")
    Fernet(key.encode()).decrypt(cookie(client).encode())  # raises if another key was used


async def test_logout_ends_the_login_for_copied_cookies(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await aiohttp_client(make_app(tmp_path))
    await login(client, "alice", "alice-pw")
    copied = cookie(client)
    csrf = await token(client, "/")
    r = await client.post("/logout", data={"csrf_token": csrf}, allow_redirects=False)
    assert r.status == 303
    set_cookie(client, copied)
    assert "Logged in as" not in await (await client.get("/")).text()


@pytest.mark.parametrize("path", ["/login/ldap", "/logout", "/rooms/new", "/r/x/join"])
async def test_post_without_or_with_wrong_csrf_is_403(
    aiohttp_client: Any, tmp_path: Path, path: str
) -> None:
    client = await aiohttp_client(make_app(tmp_path))
    await client.get("/login")  # a session with a token exists
    form = {"username": "alice", "password": "alice-pw"}
    r = await client.post(path, data=form, allow_redirects=False)
    assert r.status == 403
    assert "security token" in await r.text()
    r = await client.post(path, data={**form, "csrf_token": "forged"}, allow_redirects=False)
    assert r.status == 403
    r = await client.post(path, json={"csrf_token": await token(client)}, allow_redirects=False)
    assert r.status == 403  # only form bodies carry the token
    assert "Logged in as" not in await (await client.get("/")).text()


async def test_csrf_token_from_another_session_is_refused(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await aiohttp_client(make_app(tmp_path))
    stolen = await token(client)  # the attacker's own session's token
    client.session.cookie_jar.clear()
    await client.get("/login")  # the victim's session
    r = await client.post(
        "/login/ldap",
        data={"username": "alice", "password": "alice-pw", "csrf_token": stolen},
        allow_redirects=False,
    )
    assert r.status == 403


async def test_login_rotates_the_session(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await aiohttp_client(make_app(tmp_path))
    before = await token(client)
    await login(client, "alice", "alice-pw")
    after = await token(client, "/")
    assert before != after  # no session fixation: a new session and token


async def test_two_nodes_on_one_postgresql_share_logins(
    aiohttp_client: Any, tmp_path: Path, new_pg_url: Callable[[], str]
) -> None:
    """Nodes A and B on one database: the cookie key made at start is one key, a login
    on A is a login on B, and logging out on B ends it on A too."""
    url = new_pg_url()
    a = await aiohttp_client(make_app(tmp_path / "a", database_url=url))
    b = await aiohttp_client(make_app(tmp_path / "b", database_url=url))
    assert (await login(a, "alice", "alice-pw")).status == 303
    copied = cookie(a)
    set_cookie(b, copied)
    assert "Logged in as Alice" in await (await b.get("/")).text()
    csrf = await token(b, "/")
    assert (await b.post("/logout", data={"csrf_token": csrf}, allow_redirects=False)).status == 303
    set_cookie(a, copied)
    assert "Logged in as" not in await (await a.get("/")).text()
