"""Meeting id → room and endpoint id → name, kept in the database (``jitsi_meetings``
and ``jitsi_occupants`` of orchestrator/schema.py).

Prosody posts (``event_sync.Post``) record which room a Jitsi meeting id belongs to
and who joined under which endpoint id; Jigasi JOIN posts record its participants'
names. ``resolve`` rewrites a caption event that names only a meeting and an
endpoint (what the videobridge captioner knows) into one filed under the room with
the speaker's name:

    meetings = Meetings(db)
    await meetings.record(event_sync.parse("occupant/joined", body))
    event = await meetings.resolve(event)  # room "keynote", speaker "Ana Kim"

Lookups are cached in memory, briefly: other orchestrator nodes on the same database
record posts too (Prosody's and Jigasi's may reach one node, the captions another), so a
found room or name is asked again after ``KNOWN_FOR`` seconds and a miss after
``UNKNOWN_FOR``. A write through this object updates its own cache at once; the
database is the truth for every node and for a restarted orchestrator.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.captions.event_sync import Post
from orchestrator.captions.store import now_ms
from orchestrator.db import Database, upsert
from orchestrator.schema import jitsi_meetings, jitsi_occupants
from plenary.events import CaptionEvent

KEEP_DESTROYED_MS = 7 * 86_400_000  # meetings (and names) kept this long after they end
CACHE_LIMIT = 10_000
KNOWN_FOR = 60.0  # seconds a room or name found in the database is used without asking
UNKNOWN_FOR = 2.0  # seconds a miss is believed (another node may record it any moment)

K = TypeVar("K")


class Meetings:
    def __init__(self, db: Database, clock: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self._clock = clock
        # meeting id → (room, None: unknown; until when it is believed)
        self._rooms: dict[str, tuple[str | None, float]] = {}
        # (scope, endpoint) → (name, None: unknown; until when)
        self._names: dict[tuple[str, str], tuple[str | None, float]] = {}

    def _cached(self, cache: dict[K, tuple[str | None, float]], key: K) -> tuple[bool, str | None]:
        entry = cache.get(key)
        if entry is None or entry[1] <= self._clock():
            return False, None
        return True, entry[0]

    def _keep(self, cache: dict[K, tuple[str | None, float]], key: K, value: str | None) -> None:
        cache[key] = (value, self._clock() + (KNOWN_FOR if value is not None else UNKNOWN_FOR))

    # ---- Prosody ---------------------------------------------------------------

    async def record(self, post: Post) -> bool:
        """Store what a Prosody post says; False when it carries nothing to map."""
        if not post.usable:
            return False
        meeting = post.meeting_key
        room = post.room_key
        at_ms = _ms(post.destroyed_at or post.created_at)
        occupant = post.occupant

        row = {
            "meeting_id": meeting,
            "room": room,
            "room_jid": (
                (post.breakout_room_jid or "") if post.is_breakout else post.room_jid
            ).lower(),
            "main_room": post.main_room,
            "breakout_id": post.breakout_room_id,
            "breakout_name": post.breakout_room_name,
            "created_at_ms": at_ms,
        }
        stmt = upsert(self.db, jitsi_meetings).values(row)
        stmt = stmt.on_conflict_do_update(
            index_elements=[jitsi_meetings.c.meeting_id],
            set_={
                "room": stmt.excluded.room,
                "room_jid": stmt.excluded.room_jid,
                "main_room": stmt.excluded.main_room,
                "breakout_id": stmt.excluded.breakout_id,
                "breakout_name": func.coalesce(
                    stmt.excluded.breakout_name, jitsi_meetings.c.breakout_name
                ),
            },
        )
        async with self.db.write() as conn:
            await conn.execute(stmt)
            if post.event_name == "muc-room-destroyed":
                await conn.execute(
                    update(jitsi_meetings)
                    .where(jitsi_meetings.c.meeting_id == meeting)
                    .values(destroyed_at_ms=at_ms)
                )
                await _forget_old(conn, at_ms - KEEP_DESTROYED_MS)
            if occupant is not None and occupant.endpoint_id:
                scope = f"meeting:{meeting}"
                if post.event_name == "muc-occupant-left":
                    await _left(conn, scope, occupant.endpoint_id, _ms(occupant.left_at))
                else:
                    await self._upsert_name(
                        conn, scope, occupant.endpoint_id, post.token_name, occupant.id or "",
                        _ms(occupant.joined_at),
                    )  # fmt: skip
        destroyed = post.event_name == "muc-room-destroyed"
        if destroyed or len(self._rooms) > CACHE_LIMIT or len(self._names) > CACHE_LIMIT:
            self._rooms.clear()
            self._names.clear()
        self._keep(self._rooms, meeting, room)
        if occupant is not None and occupant.endpoint_id:
            key = (f"meeting:{meeting}", occupant.endpoint_id)
            self._names.pop(key, None)  # re-read: a join without a name keeps an old one
        return True

    # ---- Jigasi ----------------------------------------------------------------

    async def jigasi_joined(self, room: str, participant: str, name: str, at_ms: int) -> None:
        scope = f"jigasi:{room}"
        async with self.db.write() as conn:
            await self._upsert_name(conn, scope, participant, name, "", at_ms)
        self._names.pop((scope, participant), None)

    async def jigasi_left(self, room: str, participant: str, at_ms: int) -> None:
        """Mark the participant gone; the name stays for speech posted after it left."""
        async with self.db.write() as conn:
            await _left(conn, f"jigasi:{room}", participant, at_ms)

    async def jigasi_ended(self, room: str) -> None:
        """Transcription ended in the room: forget its Jigasi participants' names."""
        scope = f"jigasi:{room}"
        async with self.db.write() as conn:
            await conn.execute(delete(jitsi_occupants).where(jitsi_occupants.c.scope == scope))
        for key in [k for k in self._names if k[0] == scope]:
            del self._names[key]

    async def jigasi_name(self, room: str, participant: str) -> str:
        return await self._name(f"jigasi:{room}", participant)

    async def _upsert_name(
        self,
        conn: AsyncConnection,
        scope: str,
        endpoint: str,
        name: str,
        user_id: str,
        at_ms: int,
    ) -> None:
        """Record a join; a join with no name never erases a name already known."""
        o = jitsi_occupants.c
        stmt = upsert(self.db, jitsi_occupants).values(
            scope=scope, endpoint=endpoint, name=name, user_id=user_id, joined_at_ms=at_ms
        )
        new = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=[o.scope, o.endpoint],
            set_={
                "name": case((new.name != "", new.name), else_=o.name),
                "user_id": case((new.user_id != "", new.user_id), else_=o.user_id),
                "joined_at_ms": new.joined_at_ms,
                "left_at_ms": None,
            },
        )
        await conn.execute(stmt)

    # ---- lookups ---------------------------------------------------------------

    async def room_of(self, meeting_id: str) -> str | None:
        hit, room = self._cached(self._rooms, meeting_id)
        if not hit:
            query = select(jitsi_meetings.c.room).where(jitsi_meetings.c.meeting_id == meeting_id)
            async with self.db.read() as conn:
                found = await conn.scalar(query)
            room = None if found is None else str(found)
            self._keep(self._rooms, meeting_id, room)
        return room

    async def room_of_jid(self, room_jid: str) -> str | None:
        """The room key of a MUC room JID Prosody told us about (a breakout room's)."""
        query = (
            select(jitsi_meetings.c.room)
            .where(jitsi_meetings.c.room_jid == room_jid.lower())
            .order_by(jitsi_meetings.c.created_at_ms.desc())
            .limit(1)
        )
        async with self.db.read() as conn:
            found = await conn.scalar(query)
        return None if found is None else str(found)

    async def _name(self, scope: str, endpoint: str) -> str:
        key = (scope, endpoint)
        hit, name = self._cached(self._names, key)
        if not hit:
            o = jitsi_occupants.c
            query = select(o.name).where(o.scope == scope, o.endpoint == endpoint)
            async with self.db.read() as conn:
                found = await conn.scalar(query)
            name = str(found) if found else None
            self._keep(self._names, key, name)
        return name or ""

    async def resolve(self, event: CaptionEvent) -> CaptionEvent:
        """File a meeting's caption under its room and its endpoint's name.

        An event that names its room keeps it; an unmapped meeting keeps the meeting
        id as its room (as before this mapping existed). An endpoint without a known
        name keeps the producer's speaker label ("Speaker N").
        """
        if not event.meeting_id:
            return event
        room = event.room or await self.room_of(event.meeting_id) or event.meeting_id
        speaker = event.speaker
        if event.endpoint:
            speaker = await self._name(f"meeting:{event.meeting_id}", event.endpoint) or speaker
        if room == event.room and speaker == event.speaker:
            return event
        return dataclasses.replace(event, room=room, speaker=speaker)


def _ms(seconds: float | None) -> int:
    """Prosody's os.time() seconds to epoch ms; now when the sender gave none."""
    return now_ms() if seconds is None else round(seconds * 1000)


async def _left(conn: AsyncConnection, scope: str, endpoint: str, at_ms: int) -> None:
    o = jitsi_occupants.c
    await conn.execute(
        update(jitsi_occupants)
        .where(o.scope == scope, o.endpoint == endpoint)
        .values(left_at_ms=at_ms)
    )


async def _forget_old(conn: AsyncConnection, before_ms: int) -> None:
    """Drop meetings destroyed before ``before_ms`` and their occupants' names."""
    m = jitsi_meetings.c
    query = select(m.meeting_id).where(m.destroyed_at_ms < before_ms)
    old: list[str] = list((await conn.execute(query)).scalars())
    for meeting in old:
        scope = f"meeting:{meeting}"
        await conn.execute(delete(jitsi_occupants).where(jitsi_occupants.c.scope == scope))
        await conn.execute(delete(jitsi_meetings).where(m.meeting_id == meeting))
