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
import sqlite3
import time
from dataclasses import dataclass

from orchestrator.access.identity import Identity
from orchestrator.db import Database

PREFIX = "plr_"  # recognisable in a leaked paste, never in the log
DAY_MS = 86_400_000
MAX_DAYS = 90
SELECT = (
    "SELECT id, room, owner, identity, created_at_ms, expires_at_ms, revoked_at_ms,"
    " revoked_by, last_used_at_ms FROM read_tokens"
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

        def run(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "INSERT INTO read_tokens (hash, room, owner, identity, created_at_ms,"
                " expires_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
                (digest(token), room, owner_of(identity), ident, created,
                 created + days * DAY_MS),
            )  # fmt: skip
            assert cursor.lastrowid is not None
            return cursor.lastrowid

        row_id = await self.db.write(run)
        row = await self.get(row_id)
        assert row is not None
        return token, row

    async def get(self, token_id: int) -> ReadToken | None:
        row = await self.db.read(
            lambda c: c.execute(SELECT + " WHERE id = ?", (token_id,)).fetchone()
        )
        return ReadToken(*row) if row else None

    async def check(self, token: str) -> ReadToken | None:
        """The row of ``token`` (whatever its state; the caller says why it is refused),
        marked used when active; None when no such token was ever issued."""
        if not token.startswith(PREFIX):
            return None
        hashed = digest(token)
        row = await self.db.read(
            lambda c: c.execute(SELECT + " WHERE hash = ?", (hashed,)).fetchone()
        )
        if row is None:
            return None
        found = ReadToken(*row)
        if found.state() == "active":
            at = now_ms()
            await self.db.write(
                lambda c: c.execute(
                    "UPDATE read_tokens SET last_used_at_ms = ? WHERE id = ?", (at, found.id)
                )
            )
        return found

    async def list(self, room: str, owner: str | None = None) -> list[ReadToken]:
        """The room's tokens, newest first; only ``owner``'s when given."""
        args: tuple[str, ...]
        if owner is None:
            query, args = SELECT + " WHERE room = ? ORDER BY id DESC", (room,)
        else:
            query, args = SELECT + " WHERE room = ? AND owner = ? ORDER BY id DESC", (room, owner)
        rows = await self.db.read(lambda c: c.execute(query, args).fetchall())
        return [ReadToken(*r) for r in rows]

    async def revoke(self, token_id: int, by: str) -> bool:
        """Revoke a token (once); False when it is unknown or was revoked already."""
        at = now_ms()

        def run(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE read_tokens SET revoked_at_ms = ?, revoked_by = ?"
                " WHERE id = ? AND revoked_at_ms IS NULL",
                (at, by, token_id),
            )
            return cursor.rowcount == 1

        return await self.db.write(run)
