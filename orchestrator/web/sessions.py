"""Sessions: encrypted, signed cookies (Fernet) that hold a login id and a CSRF token.

The cookie is HttpOnly, SameSite=Lax and Secure when ``public_url`` is https. Its
content is AES-encrypted and HMAC-signed by Fernet, so a flipped byte makes it
unreadable and the request continues as a fresh anonymous session. Who someone is
lives server-side in ``logins``; logout deletes that row, so a copied cookie is
worthless afterwards.

The key is ``orchestrator.secret_key``; when empty, one is generated on first start
and kept in the ``kv`` table so restarts keep everyone logged in.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp_session import Session, get_session, new_session, session_middleware
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from cryptography.fernet import Fernet

from orchestrator.access.identity import Identity
from orchestrator.app_keys import db_key, settings_key
from orchestrator.db import Database
from orchestrator.web.web_keys import session_middleware_key

COOKIE = "plenary_session"
KV_SECRET = "session_secret_key"  # noqa: S105 (a kv key name, not a secret)


async def secret_key(db: Database, configured: str) -> str:
    """The configured key, else the one kept in ``kv`` (made once, first writer wins)."""
    if configured:
        return configured

    def get_or_make(c: sqlite3.Connection) -> str:
        c.execute(
            "INSERT OR IGNORE INTO kv (key, value) VALUES (?, ?)",
            (KV_SECRET, Fernet.generate_key().decode("ascii")),
        )
        row = c.execute("SELECT value FROM kv WHERE key = ?", (KV_SECRET,)).fetchone()
        return str(row[0])

    return await db.write(get_or_make)


async def sessions_ctx(app: web.Application) -> AsyncIterator[None]:
    """Needs the database (the key may live there): runs after database_ctx."""
    o = app[settings_key].orchestrator
    key = await secret_key(app[db_key], o.secret_key)
    storage = EncryptedCookieStorage(
        key,
        cookie_name=COOKIE,
        max_age=o.session_max_age,
        httponly=True,
        secure=o.public_url.startswith("https://"),
        samesite="Lax",
    )
    app[session_middleware_key] = session_middleware(storage)
    yield


@web.middleware
async def sessions(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp-session's middleware, built once the key is known (see sessions_ctx)."""
    inner = request.app[session_middleware_key]
    return await inner(request, handler)


def csrf_token(session: Session) -> str:
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


# Logins ------------------------------------------------------------------------------


def _identity_json(identity: Identity) -> str:
    return json.dumps(
        {
            "source": identity.source,
            "user_id": identity.user_id,
            "username": identity.username,
            "display_name": identity.display_name,
            "email": identity.email,
            "groups": sorted(identity.groups),
            "blocked": identity.blocked,
        }
    )


def _identity(text: str) -> Identity:
    d = json.loads(text)
    return Identity(
        source=d["source"],
        user_id=d["user_id"],
        username=d["username"],
        display_name=d["display_name"],
        email=d["email"],
        groups=frozenset(d["groups"]),
        blocked=bool(d["blocked"]),
    )


async def log_in(request: web.Request, identity: Identity) -> None:
    """A new session (never the pre-login one: no fixation) bound to a new login row."""
    db = request.app[db_key]
    max_age = request.app[settings_key].orchestrator.session_max_age
    login_id = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    expires = now + timedelta(seconds=max_age)

    def insert(c: sqlite3.Connection) -> None:
        c.execute("DELETE FROM logins WHERE expires_at < ?", (now.isoformat(),))
        c.execute(
            "INSERT INTO logins (id, identity, created_at, expires_at) VALUES (?, ?, ?, ?)",
            (login_id, _identity_json(identity), now.isoformat(), expires.isoformat()),
        )

    await db.write(insert)
    tz = (await get_session(request)).get("tz")
    session = await new_session(request)
    session["login"] = login_id
    if isinstance(tz, str):
        session["tz"] = tz
    csrf_token(session)


async def log_out(request: web.Request) -> None:
    session = await get_session(request)
    login_id = session.get("login")
    if isinstance(login_id, str):
        await request.app[db_key].write(
            lambda c: c.execute("DELETE FROM logins WHERE id = ?", (login_id,))
        )
    session.invalidate()


async def current_identity(request: web.Request) -> Identity | None:
    """Who is logged in on this request, or None."""
    session = await get_session(request)
    login_id = session.get("login")
    if not isinstance(login_id, str):
        return None
    now = datetime.now(UTC).isoformat()
    row = await request.app[db_key].read(
        lambda c: c.execute(
            "SELECT identity FROM logins WHERE id = ? AND expires_at > ?", (login_id, now)
        ).fetchone()
    )
    if row is None:
        del session["login"]
        return None
    return _identity(row[0])
