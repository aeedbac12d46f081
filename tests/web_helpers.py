"""Helpers for the web tests: an app with rooms, a fake directory, form posting."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp

from orchestrator.access.errors import IdentitySourceUnavailable, InvalidCredentials
from orchestrator.access.identity import Identity
from plenary.settings import Settings, load_settings

JITSI_SECRET = "jitsi-test-secret-0123456789abcdef"


def web_settings(tmp_path: Path, **orchestrator: Any) -> Settings:
    return load_settings(
        orchestrator={"database": tmp_path / "web.sqlite3", "organizers": ["olga"],
                      **orchestrator},
        ldap={"enabled": True},
        jitsi={"domain": "meet.example.org", "app_secret": JITSI_SECRET},
    )  # fmt: skip


class FakeDirectory:
    """Stands in for LdapDirectory where slapd is beside the point (sessions, CSRF)."""

    def __init__(self) -> None:
        self.down = False
        self.users = {
            "alice": ("alice-pw", frozenset({"devs"})),
            "olga": ("olga-pw", frozenset()),
            "bob": ("bob-pw", frozenset()),
        }

    async def authenticate(self, username: str, password: str) -> Identity:
        if self.down:
            raise IdentitySourceUnavailable("the directory cannot be reached")
        user = self.users.get(username)
        if user is None or user[0] != password:
            raise InvalidCredentials()
        return Identity("ldap", username, username, username.title(), None, user[1])


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "page has no CSRF field"
    return match.group(1)


async def token(client: Any, path: str = "/login") -> str:
    return csrf_of(await (await client.get(path)).text())


async def login(client: Any, username: str, password: str) -> Any:
    csrf = await token(client)
    return await client.post(
        "/login/ldap",
        data={"username": username, "password": password, "csrf_token": csrf, "next": "/"},
        allow_redirects=False,
    )


class Person:
    """One person's browser against a test server: its own cookie jar, an LDAP login
    through the real form (passwords of tests/slapd.py)."""

    def __init__(self, client: Any) -> None:
        self.http = aiohttp.ClientSession(
            str(client.make_url("")), cookie_jar=aiohttp.CookieJar(unsafe=True)
        )

    async def login(self, user: str) -> None:
        from bench.harness.slapd import PASSWORDS

        page = await (await self.http.get("/login")).text()
        answer = await self.http.post(
            "/login/ldap",
            data={"username": user, "password": PASSWORDS[user],
                  "csrf_token": csrf_of(page), "next": "/"},
            allow_redirects=False,
        )  # fmt: skip
        assert answer.status == 303, await answer.text()

    async def close(self) -> None:
        await self.http.close()
