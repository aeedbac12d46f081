"""Where rooms live: one class over ``Database``; a PostgreSQL one can replace it.

repo = RoomRepository(db)
room = await repo.create(RoomCreate(slug="keynote", ...))
await repo.get("keynote")
await repo.policy_for("keynote")  # CaptionPolicy(transcript='keep', retention_days=30)

It is also what the caption layer asks for a room's caption policy (the ``RoomPolicies``
of orchestrator/captions/service.py): only this module reads the rooms table.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from orchestrator.db import Database
from orchestrator.rooms.model import Room, RoomCreate, RoomFields
from orchestrator.rooms.policy import CaptionPolicy


class RoomExists(Exception):
    """A room by that name exists already."""


class RoomNotFound(Exception):
    """No room by that name."""


class RoomRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def list(self) -> list[Room]:
        rows = await self.db.read(
            lambda c: c.execute("SELECT body FROM rooms ORDER BY slug").fetchall()
        )
        return [Room.model_validate_json(row[0]) for row in rows]

    async def get(self, slug: str) -> Room:
        row = await self.db.read(
            lambda c: c.execute("SELECT body FROM rooms WHERE slug = ?", (slug,)).fetchone()
        )
        if row is None:
            raise RoomNotFound(slug)
        return Room.model_validate_json(row[0])

    async def policy_for(self, slug: str) -> CaptionPolicy | None:
        """What room ``slug`` keeps of its captions, as it says now; None: no such room."""
        try:
            return (await self.get(slug)).caption_policy
        except RoomNotFound:
            return None

    async def policies(self) -> dict[str, CaptionPolicy]:
        """Every room's caption policy, by slug."""
        return {room.slug: room.caption_policy for room in await self.list()}

    async def create(self, new: RoomCreate) -> Room:
        now = _now()
        room = Room(**new.model_dump(), created_at=now, updated_at=now)

        def insert(c: sqlite3.Connection) -> None:
            try:
                c.execute(
                    "INSERT INTO rooms (slug, title, body, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (room.slug, room.title, room.model_dump_json(), now.isoformat(),
                     now.isoformat()),
                )  # fmt: skip
            except sqlite3.IntegrityError as exc:
                raise RoomExists(room.slug) from exc

        await self.db.write(insert)
        return room

    async def replace(self, slug: str, fields: RoomFields) -> Room:
        """Replace everything but the name and creation time."""

        def update(c: sqlite3.Connection) -> Room:
            row = c.execute("SELECT body FROM rooms WHERE slug = ?", (slug,)).fetchone()
            if row is None:
                raise RoomNotFound(slug)
            old = Room.model_validate_json(row[0])
            room = Room(
                **fields.model_dump(), slug=slug, created_at=old.created_at, updated_at=_now()
            )
            c.execute(
                "UPDATE rooms SET title = ?, body = ?, updated_at = ? WHERE slug = ?",
                (room.title, room.model_dump_json(), room.updated_at.isoformat(), slug),
            )
            return room

        return await self.db.write(update)

    async def delete(self, slug: str) -> None:
        def remove(c: sqlite3.Connection) -> None:
            if c.execute("DELETE FROM rooms WHERE slug = ?", (slug,)).rowcount == 0:
                raise RoomNotFound(slug)

        await self.db.write(remove)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
