"""Personal read tokens: captions and transcripts of one room without a browser session.

An admitted attendee makes one on the room page and gives it to curl, a feed reader or
a terminal client as ``?token=`` or ``Authorization: Bearer``. Only its sha256 is
stored, with its owner (and the identity they had, so the room's current policy is
asked again at each use), room, creation, expiry and revocation.

    tokens = ReadTokens(db)
    secret, row = await tokens.issue("keynote", identity, days=7)
    await tokens.check(secret)  # the ReadToken, or None when unknown
    await tokens.revoke(row.id, by="ldap:olga")
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, insert, select, update

from orchestrator.access.identity import Identity
from orchestrator.db import Database
from orchestrator.schema import read_tokens

PREFIX = "plr_"  # recognisable in a leaked paste, never in the log
DAY_MS = 86_400_000
MAX_DAYS = 90
t = read_tokens.c
SELECT = select(
    t.id,
    t.room,
    t.owner,
    t.identity,
    t.created_at_ms,
    t.expires_at_ms,
    t.revoked_at_ms,
    t.revoked_by,
    t.last_used_at_ms,
)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def owner_of(identity: Identity) -> str:
    return f"{identity.source}:{identity.username or identity.user_id}"


@dataclass(frozen=True, slots=True)
class ReadToken:
    id: int
    room: str
    owner: str
    identity_json: str
    created_at_ms: int
    expires_at_ms: int
    revoked_at_ms: int | None
    revoked_by: str | None
    last_used_at_ms: int | None

    @property
    def identity(self) -> Identity:
        data = json.loads(self.identity_json)
        return Identity(
            data["source"], data["user_id"], data["username"], data["display_name"],
            data.get("email"), frozenset(data.get("groups", [])), bool(data.get("blocked")),
        )  # fmt: skip

    def state(self, at_ms: int | None = None) -> str:
        """``active``, ``revoked`` or ``expired``."""
        if self.revoked_at_ms is not None:
            return "revoked"
        if self.expires_at_ms <= (at_ms or now_ms()):
            return "expired"
        return "active"


class ReadTokens:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def issue(self, room: str, identity: Identity, days: int) -> tuple[str, ReadToken]:
        """A new token for ``room`` valid ``days`` days (1 to MAX_DAYS); the token itself
        (shown once) and its row."""
        if not 1 <= days <= MAX_DAYS:
            raise ValueError(f"a read token lasts 1 to {MAX_DAYS} days")
        token = PREFIX + secrets.token_urlsafe(32)
        created = now_ms()
        ident = json.dumps(
            {"source": identity.source, "user_id": identity.user_id,
             "username": identity.username, "display_name": identity.display_name,
             "email": identity.email, "groups": sorted(identity.groups),
             "blocked": identity.blocked},
        )  # fmt: skip

        async with self.db.write() as conn:
            result = await conn.execute(
                insert(read_tokens).values(
                    hash=digest(token), room=room, owner=owner_of(identity), identity=ident,
                    created_at_ms=created, expires_at_ms=created + days * DAY_MS,
                ).returning(t.id)
            )  # fmt: skip
            row_id: int = result.scalar_one()
        row = await self.get(row_id)
        assert row is not None
        return token, row

    async def get(self, token_id: int) -> ReadToken | None:
        async with self.db.read() as conn:
            row = (await conn.execute(SELECT.where(t.id == token_id))).first()
        return _token(row) if row else None

    async def check(self, token: str) -> ReadToken | None:
        """The row of ``token`` (whatever its state; the caller says why it is refused),
        marked used when active; None when no such token was ever issued."""
        if not token.startswith(PREFIX):
            return None
        async with self.db.read() as conn:
            row = (await conn.execute(SELECT.where(t.hash == digest(token)))).first()
        if row is None:
            return None
        found = _token(row)
        if found.state() == "active":
            async with self.db.write() as conn:
                used = update(read_tokens).where(t.id == found.id).values(last_used_at_ms=now_ms())
                await conn.execute(used)
        return found

    async def list(self, room: str, owner: str | None = None) -> list[ReadToken]:
        """The room's tokens, newest first; only ``owner``'s when given."""
        query = SELECT.where(t.room == room).order_by(t.id.desc())
        if owner is not None:
            query = query.where(t.owner == owner)
        async with self.db.read() as conn:
            return [_token(r) for r in await conn.execute(query)]

    async def revoke(self, token_id: int, by: str) -> bool:
        """Revoke a token (once); False when it is unknown or was revoked already."""
        async with self.db.write() as conn:
            result = await conn.execute(
                update(read_tokens)
                .where(t.id == token_id, t.revoked_at_ms.is_(None))
                .values(revoked_at_ms=now_ms(), revoked_by=by)
            )
            return result.rowcount == 1


def _token(row: Row[Any]) -> ReadToken:
    return ReadToken(
        row.id, row.room, row.owner, row.identity, row.created_at_ms, row.expires_at_ms,
        row.revoked_at_ms, row.revoked_by, row.last_used_at_ms,
    )  # fmt: skip
