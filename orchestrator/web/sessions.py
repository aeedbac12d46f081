"""Sessions: encrypted, signed cookies (Fernet) that hold a login id and a CSRF token.

The cookie is HttpOnly, SameSite=Lax and Secure when ``public_url`` is https. Its
content is AES-encrypted and HMAC-signed by Fernet, so a flipped byte makes it
unreadable and the request continues as a fresh anonymous session. Who someone is
lives server-side in ``logins``; logout deletes that row, so a copied cookie is
worthless afterwards.

The key is ``orchestrator.secret_key``; when empty, one is generated on first start
and kept in the ``kv`` table so restarts keep everyone logged in, and every
orchestrator node on one database signs with the same key (the first node's insert
wins; the others read what it wrote).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp_session import Session, get_session, new_session, session_middleware
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from cryptography.fernet import Fernet
from sqlalchemy import delete, insert, select

from orchestrator.access.identity import Identity
from orchestrator.app_keys import db_key, settings_key
from orchestrator.db import Database, upsert
from orchestrator.schema import kv, logins
from orchestrator.web.web_keys import session_middleware_key

COOKIE = "plenary_session"
KV_SECRET = "session_secret_key"  # noqa: S105 (a kv key name, not a secret)


async def secret_key(db: Database, configured: str) -> str:
    """The configured key, else the one kept in ``kv`` (made once, first writer wins).

    Insert-if-absent, then read, in one transaction: a node that races another one
    waits on the other's row (PostgreSQL's unique index; SQLite's single writer) and
    reads the key that won, so every node signs cookies with the same key."""
    if configured:
        return configured
    made = {"key": KV_SECRET, "value": Fernet.generate_key().decode("ascii")}
    async with db.write() as conn:
        await conn.execute(upsert(db, kv).values(made).on_conflict_do_nothing())
        return str(await conn.scalar(select(kv.c.value).where(kv.c.key == KV_SECRET)))


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

    async with db.write() as conn:
        await conn.execute(delete(logins).where(logins.c.expires_at < now.isoformat()))
        await conn.execute(
            insert(logins).values(id=login_id, identity=_identity_json(identity),
                                  created_at=now.isoformat(), expires_at=expires.isoformat())
        )  # fmt: skip
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
        async with request.app[db_key].write() as conn:
            await conn.execute(delete(logins).where(logins.c.id == login_id))
    session.invalidate()


async def current_identity(request: web.Request) -> Identity | None:
    """Who is logged in on this request, or None."""
    session = await get_session(request)
    login_id = session.get("login")
    if not isinstance(login_id, str):
        return None
    now = datetime.now(UTC).isoformat()
    query = select(logins.c.identity).where(logins.c.id == login_id, logins.c.expires_at > now)
    async with request.app[db_key].read() as conn:
        found = await conn.scalar(query)
    if found is None:
        del session["login"]
        return None
    return _identity(found)
