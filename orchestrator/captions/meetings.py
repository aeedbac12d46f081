"""Meeting id → room and endpoint id → name, kept in SQLite (migration 0302).

Prosody posts (``event_sync.Post``) record which room a Jitsi meeting id belongs to
and who joined under which endpoint id; Jigasi JOIN posts record its participants'
names. ``resolve`` rewrites a caption event that names only a meeting and an
endpoint (what the videobridge captioner knows) into one filed under the room with
the speaker's name:

    meetings = Meetings(db)
    await meetings.record(event_sync.parse("occupant/joined", body))
    event = await meetings.resolve(event)  # room "keynote", speaker "Ana Kim"

Lookups are cached in memory; every write goes through this object and updates the
cache, and the database stays the truth for a restarted orchestrator.
"""

from __future__ import annotations

import dataclasses
import sqlite3

from orchestrator.captions.event_sync import Post
from orchestrator.captions.store import now_ms
from orchestrator.db import Database
from plenary.events import CaptionEvent

KEEP_DESTROYED_MS = 7 * 86_400_000  # meetings (and names) kept this long after they end
CACHE_LIMIT = 10_000


class Meetings:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._rooms: dict[str, str | None] = {}  # meeting id → room (None: unknown)
        self._names: dict[tuple[str, str], str | None] = {}  # (scope, endpoint) → name

    # ---- Prosody ---------------------------------------------------------------

    async def record(self, post: Post) -> bool:
        """Store what a Prosody post says; False when it carries nothing to map."""
        if not post.usable:
            return False
        meeting = post.meeting_key
        room = post.room_key
        at_ms = _ms(post.destroyed_at or post.created_at)
        occupant = post.occupant

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO jitsi_meetings VALUES (?, ?, ?, ?, ?, ?, ?, NULL)"
                " ON CONFLICT (meeting_id) DO UPDATE SET room = excluded.room,"
                " room_jid = excluded.room_jid, main_room = excluded.main_room,"
                " breakout_id = excluded.breakout_id,"
                " breakout_name = coalesce(excluded.breakout_name, breakout_name)",
                (
                    meeting,
                    room,
                    ((post.breakout_room_jid or "") if post.is_breakout else post.room_jid).lower(),
                    post.main_room,
                    post.breakout_room_id,
                    post.breakout_room_name,
                    at_ms,
                ),
            )
            if post.event_name == "muc-room-destroyed":
                conn.execute(
                    "UPDATE jitsi_meetings SET destroyed_at_ms = ? WHERE meeting_id = ?",
                    (at_ms, meeting),
                )
                _forget_old(conn, at_ms - KEEP_DESTROYED_MS)
            if occupant is None or not occupant.endpoint_id:
                return
            scope = f"meeting:{meeting}"
            if post.event_name == "muc-occupant-left":
                conn.execute(
                    "UPDATE jitsi_occupants SET left_at_ms = ? WHERE scope = ? AND endpoint = ?",
                    (_ms(occupant.left_at), scope, occupant.endpoint_id),
                )
                return
            _upsert_name(
                conn, scope, occupant.endpoint_id, post.token_name, occupant.id or "",
                _ms(occupant.joined_at),
            )  # fmt: skip

        await self.db.write(run)
        destroyed = post.event_name == "muc-room-destroyed"
        if destroyed or len(self._rooms) > CACHE_LIMIT or len(self._names) > CACHE_LIMIT:
            self._rooms.clear()
            self._names.clear()
        self._rooms[meeting] = room
        if occupant is not None and occupant.endpoint_id:
            key = (f"meeting:{meeting}", occupant.endpoint_id)
            self._names.pop(key, None)  # re-read: a join without a name keeps an old one
        return True

    # ---- Jigasi ----------------------------------------------------------------

    async def jigasi_joined(self, room: str, participant: str, name: str, at_ms: int) -> None:
        scope = f"jigasi:{room}"
        await self.db.write(lambda c: _upsert_name(c, scope, participant, name, "", at_ms))
        self._names.pop((scope, participant), None)

    async def jigasi_left(self, room: str, participant: str, at_ms: int) -> None:
        """Mark the participant gone; the name stays for speech posted after it left."""
        await self.db.write(
            lambda c: c.execute(
                "UPDATE jitsi_occupants SET left_at_ms = ? WHERE scope = ? AND endpoint = ?",
                (at_ms, f"jigasi:{room}", participant),
            )
        )

    async def jigasi_ended(self, room: str) -> None:
        """Transcription ended in the room: forget its Jigasi participants' names."""
        scope = f"jigasi:{room}"
        await self.db.write(
            lambda c: c.execute("DELETE FROM jitsi_occupants WHERE scope = ?", (scope,))
        )
        for key in [k for k in self._names if k[0] == scope]:
            del self._names[key]

    async def jigasi_name(self, room: str, participant: str) -> str:
        return await self._name(f"jigasi:{room}", participant)

    # ---- lookups ---------------------------------------------------------------

    async def room_of(self, meeting_id: str) -> str | None:
        if meeting_id not in self._rooms:
            row = await self.db.read(
                lambda c: c.execute(
                    "SELECT room FROM jitsi_meetings WHERE meeting_id = ?", (meeting_id,)
                ).fetchone()
            )
            self._rooms[meeting_id] = str(row[0]) if row else None
        return self._rooms[meeting_id]

    async def room_of_jid(self, room_jid: str) -> str | None:
        """The room key of a MUC room JID Prosody told us about (a breakout room's)."""
        row = await self.db.read(
            lambda c: c.execute(
                "SELECT room FROM jitsi_meetings WHERE room_jid = ?"
                " ORDER BY created_at_ms DESC LIMIT 1",
                (room_jid.lower(),),
            ).fetchone()
        )
        return str(row[0]) if row else None

    async def _name(self, scope: str, endpoint: str) -> str:
        key = (scope, endpoint)
        if key not in self._names:
            row = await self.db.read(
                lambda c: c.execute(
                    "SELECT name FROM jitsi_occupants WHERE scope = ? AND endpoint = ?", key
                ).fetchone()
            )
            self._names[key] = str(row[0]) if row and row[0] else None
        return self._names[key] or ""

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


def _upsert_name(
    conn: sqlite3.Connection, scope: str, endpoint: str, name: str, user_id: str, at_ms: int
) -> None:
    """Record a join; a join with no name never erases a name already known."""
    conn.execute(
        "INSERT INTO jitsi_occupants VALUES (?, ?, ?, ?, ?, NULL)"
        " ON CONFLICT (scope, endpoint) DO UPDATE SET"
        " name = CASE WHEN excluded.name != '' THEN excluded.name ELSE name END,"
        " user_id = CASE WHEN excluded.user_id != '' THEN excluded.user_id ELSE user_id END,"
        " joined_at_ms = excluded.joined_at_ms, left_at_ms = NULL",
        (scope, endpoint, name, user_id, at_ms),
    )


def _forget_old(conn: sqlite3.Connection, before_ms: int) -> None:
    """Drop meetings destroyed before ``before_ms`` and their occupants' names."""
    old = [
        row[0]
        for row in conn.execute(
            "SELECT meeting_id FROM jitsi_meetings WHERE destroyed_at_ms < ?", (before_ms,)
        )
    ]
    for meeting in old:
        conn.execute("DELETE FROM jitsi_occupants WHERE scope = ?", (f"meeting:{meeting}",))
        conn.execute("DELETE FROM jitsi_meetings WHERE meeting_id = ?", (meeting,))
