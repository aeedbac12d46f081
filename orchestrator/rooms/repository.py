"""Where rooms live: the ``rooms`` table of orchestrator/schema.py, through ``Database``
(SQLite or PostgreSQL).

repo = RoomRepository(db)
room = await repo.create(RoomCreate(slug="keynote", ...))
await repo.get("keynote")
await repo.policy_for("keynote")  # CaptionPolicy(transcript='keep', retention_days=30)

It is also what the caption layer asks for a room's caption policy (the ``RoomPolicies``
of orchestrator/captions/service.py): only this module reads the rooms table.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from orchestrator.db import Database
from orchestrator.rooms.model import Room, RoomCreate, RoomFields
from orchestrator.rooms.policy import CaptionPolicy
from orchestrator.schema import rooms


class RoomExists(Exception):
    """A room by that name exists already."""


class RoomNotFound(Exception):
    """No room by that name."""


class RoomRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def list(self) -> list[Room]:
        async with self.db.read() as conn:
            query = select(rooms.c.body).order_by(rooms.c.slug)
            bodies: list[str] = list((await conn.execute(query)).scalars())
        return [Room.model_validate_json(body) for body in bodies]

    async def get(self, slug: str) -> Room:
        async with self.db.read() as conn:
            body = await conn.scalar(select(rooms.c.body).where(rooms.c.slug == slug))
        if body is None:
            raise RoomNotFound(slug)
        return Room.model_validate_json(body)

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
        row = {"slug": room.slug, "title": room.title, "body": room.model_dump_json(),
               "created_at": now.isoformat(), "updated_at": now.isoformat()}  # fmt: skip
        try:
            async with self.db.write() as conn:
                await conn.execute(insert(rooms).values(row))
        except IntegrityError as exc:  # the slug is taken (primary key)
            raise RoomExists(room.slug) from exc
        return room

    async def replace(self, slug: str, fields: RoomFields) -> Room:
        """Replace everything but the name and creation time."""
        async with self.db.write() as conn:
            query = select(rooms.c.body).where(rooms.c.slug == slug).with_for_update()
            body = await conn.scalar(query)
            if body is None:
                raise RoomNotFound(slug)
            old = Room.model_validate_json(body)
            room = Room(
                **fields.model_dump(), slug=slug, created_at=old.created_at, updated_at=_now()
            )
            await conn.execute(
                update(rooms)
                .where(rooms.c.slug == slug)
                .values(title=room.title, body=room.model_dump_json(),
                        updated_at=room.updated_at.isoformat())
            )  # fmt: skip
        return room

    async def delete(self, slug: str) -> None:
        async with self.db.write() as conn:
            result = await conn.execute(delete(rooms).where(rooms.c.slug == slug))
            if result.rowcount == 0:
                raise RoomNotFound(slug)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
