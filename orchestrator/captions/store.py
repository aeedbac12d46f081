"""The caption store: numbered final captions in sessions, append-only, in the database.

Numbering a caption and storing it happen in one transaction that holds the room's
counter row (``store_rows.lock_room``), so orchestrator nodes sharing one PostgreSQL
give strictly increasing numbers without gaps or duplicates. Rooms are slug
text; sessions are kept forever as tombstones once their events are removed, so a
persistent identifier is never reused and keeps answering (410 when withdrawn).

The store never decides whether a room records: its caller (``Captions``, which asks
the rooms) says so with every write. A room that keeps no transcript gets a number for
each final (its counter row, which holds no text) and nothing else: no text of it is
ever written to the database.

    store = CaptionStore(db, settings.captions)
    caption = await store.append("keynote", event, at_ms=now_ms(), keep=True)
    isinstance(caption, Duplicate)  # True: event.event_id was stored before, as caption.seq
    await store.after("keynote", 41, limit=100)  # captions 42, 43, …

A captioner's correction (``correct``) is kept append-only in ``caption_corrections``
(old and new text and speaker, who, when) under its own number from the room's counter;
the caption row holds the latest revision (docs/corrections.md).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import func, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.captions import store_rows as rows
from orchestrator.captions.model import Caption, Correction, Session
from orchestrator.captions.store_rows import events, fixes, sessions
from orchestrator.db import Database
from orchestrator.schema import caption_counters, caption_event_ids
from plenary.events import CaptionEvent
from plenary.settings import CaptionsSettings
from plenary.wire import duration_ms, scrub, stored_ms

DAY_MS = 86_400_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Duplicate(Caption):
    """A final whose producer event id was stored before: numbered ``seq`` then."""


class NoSuchCaption(LookupError):
    """The caption to correct is not stored (never was, expired or withdrawn)."""


class TooLate(ValueError):
    """The caption's session ended longer ago than captions.correction_window_hours."""


class CaptionStore:
    def __init__(self, db: Database, settings: CaptionsSettings) -> None:
        self.db = db
        self.settings = settings
        # Called in the transaction storing each caption and correction (room, stream
        # position): the live bus's NOTIFY on PostgreSQL (captions/livebus.py).
        self.announce: Callable[[AsyncConnection, str, int], Awaitable[None]] | None = None

    # ---- writes ---------------------------------------------------------------

    async def append(self, room: str, event: CaptionEvent, at_ms: int, keep: bool) -> Caption:
        """Number a final caption; store it in the room's open session when ``keep``.

        A final whose ``event_id`` is already known is not stored again: a ``Duplicate``
        with the number it got the first time comes back.
        """
        duration = duration_ms(event.start, event.end)
        gap_ms = int(self.settings.session_gap_minutes * 60_000)
        async with self.db.write() as conn:
            await rows.lock_room(conn, room)
            if event.event_id:
                known = (
                    await conn.execute(
                        select(caption_event_ids.c.room, caption_event_ids.c.seq).where(
                            caption_event_ids.c.event_id == event.event_id
                        )
                    )
                ).first()
                if known is not None:
                    return Duplicate(
                        known[0], known[1], "", at_ms, duration, event.speaker, event.language,
                        event.text, event.message_id,
                    )  # fmt: skip
            seq = await rows.next_seq(conn, room)
            if event.event_id:
                await conn.execute(
                    insert(caption_event_ids).values(event_id=event.event_id, room=room, seq=seq)
                )
            session_id, pid = None, ""
            if keep:
                session_id, pid = await rows.open_session(
                    conn, room, at_ms, gap_ms, at_ms - duration
                )
            caption = Caption(
                room, seq, pid, at_ms, duration, event.speaker, event.language, event.text,
                event.message_id,
            )  # fmt: skip
            if session_id is not None:
                # The stored row is the caption with the session's row id for its pid.
                await conn.execute(
                    insert(events).values(
                        room=room, seq=seq, session_id=session_id, at_ms=at_ms,
                        duration_ms=duration, speaker=caption.speaker, language=caption.language,
                        text=caption.text, message_id=caption.message_id,
                    )
                )  # fmt: skip
                await conn.execute(
                    update(sessions)
                    .where(sessions.c.id == session_id)
                    .values(last_at_ms=rows.later(sessions.c.last_at_ms, at_ms))
                )
                if self.announce is not None:
                    await self.announce(conn, room, seq)
            return caption

    async def correct(
        self, room: str, seq: int, text: str | None, speaker: str | None, by: str,
        at_ms: int, window_ms: int,
    ) -> Correction:  # fmt: skip
        """Store a revision of stored caption ``seq`` (None: that field unchanged): the
        caption row holds it from now on, the correction row keeps both versions; the
        correction takes the room's next number as its stream position."""
        async with self.db.write() as conn:
            await rows.lock_room(conn, room)
            row = (
                await conn.execute(
                    select(
                        events.c.text,
                        events.c.speaker,
                        events.c.revision,
                        func.coalesce(sessions.c.ended_at_ms, sessions.c.last_at_ms),
                    )  # fmt: skip
                    .join_from(events, sessions, sessions.c.id == events.c.session_id)
                    .where(
                        events.c.room == room,
                        events.c.seq == seq,
                        sessions.c.withdrawn_at_ms.is_(None),
                    )
                )
            ).first()
            if row is None:
                raise NoSuchCaption(f"room {room!r} has no stored caption {seq}")
            if at_ms > stored_ms(row[3]) + window_ms:
                raise TooLate(f"caption {seq}'s session ended more than the correction window ago")
            old_text, old_speaker = scrub(row[0]), scrub(row[1])
            fix = Correction(
                room, await rows.next_seq(conn, room), seq, int(row[2]) + 1, at_ms, by,
                old_text if text is None else text, old_speaker if speaker is None else speaker,
                old_text, old_speaker,
            )  # fmt: skip
            await conn.execute(
                insert(fixes).values(
                    room=room, pos=fix.pos, seq=seq, revision=fix.revision, at_ms=at_ms,
                    by=fix.by, old_text=old_text, new_text=fix.text, old_speaker=old_speaker,
                    new_speaker=fix.speaker,
                )
            )  # fmt: skip
            await conn.execute(
                update(events)
                .where(events.c.room == room, events.c.seq == seq)
                .values(text=fix.text, speaker=fix.speaker, revision=fix.revision)
            )
            if self.announce is not None:
                await self.announce(conn, room, fix.pos)
            return fix

    async def number(self, room: str) -> int:
        """The room's next number, for a correction of a caption kept in memory only."""
        async with self.db.write() as conn:
            await rows.lock_room(conn, room)
            return await rows.next_seq(conn, room)

    async def start_session(self, room: str, at_ms: int, keep: bool) -> str | None:
        """End the room's open session and begin a new one (Jigasi START) when ``keep``;
        its pid."""
        async with self.db.write() as conn:
            await rows.lock_room(conn, room)
            await rows.end_open(conn, room, at_ms)
            if not keep:
                return None
            return (await rows.create_session(conn, room, at_ms))[1]

    async def end_session(self, room: str, at_ms: int) -> None:
        """End the room's open session (Jigasi END); the next caption begins a new one."""
        async with self.db.write() as conn:
            await rows.lock_room(conn, room)
            await rows.end_open(conn, room, at_ms)

    async def withdraw(self, pid: str, reason: str, at_ms: int | None = None) -> bool:
        """Delete a session's captions, leaving a stub that explains why; False if unknown."""
        async with self.db.write() as conn:
            found = (await conn.execute(select(sessions.c.id).where(sessions.c.pid == pid))).first()
            if found is None:
                return False
            await rows.withdraw(conn, found[0], reason, at_ms or now_ms())
            return True

    async def expire(self, retention: dict[str, int], at_ms: int | None = None) -> list[str]:
        """Withdraw every session older than its room's retention (``retention[room]``
        days, else ``captions.retention_days``; 0: forever); their pids."""
        now = at_ms or now_ms()
        async with self.db.write() as conn:
            found = await conn.execute(
                select(sessions.c.id, sessions.c.pid, sessions.c.room, sessions.c.last_at_ms)
                .where(sessions.c.withdrawn_at_ms.is_(None))
                .order_by(sessions.c.id)
            )
            days: dict[str, int] = {}
            expired = []
            for row in found.all():
                session_id, pid, room, stored_last = int(row[0]), str(row[1]), str(row[2]), row[3]
                if room not in days:
                    days[room] = retention.get(room.split(".", 1)[0], self.settings.retention_days)
                if days[room] and stored_ms(stored_last) < now - days[room] * DAY_MS:
                    reason = f"Removed after {days[room]} days under the room's retention policy."
                    await rows.withdraw(conn, session_id, reason, now)
                    expired.append(pid)
            return expired

    # ---- reads ----------------------------------------------------------------

    async def last_seq(self, room: str) -> int:
        async with self.db.read() as conn:
            found = await conn.execute(
                select(caption_counters.c.last_seq).where(caption_counters.c.room == room)
            )
            value = found.scalar()
        return int(value) if value is not None else 0

    async def after(self, room: str, after: int, limit: int = 1000) -> list[Caption]:
        query = (
            rows.CAPTIONS.where(events.c.room == room, events.c.seq > after)
            .order_by(events.c.seq)
            .limit(limit)
        )
        async with self.db.read() as conn:
            return [rows.caption(row) for row in await conn.execute(query)]

    async def latest(self, room: str, count: int) -> list[Caption]:
        query = (
            rows.CAPTIONS.where(events.c.room == room).order_by(events.c.seq.desc()).limit(count)
        )
        async with self.db.read() as conn:
            found = (await conn.execute(query)).all()
        return [rows.caption(row) for row in reversed(found)]

    async def corrections_after(self, room: str, after: int, limit: int) -> list[Correction]:
        query = (
            rows.CORRECTIONS.where(fixes.c.room == room, fixes.c.pos > after)
            .order_by(fixes.c.pos)
            .limit(limit)
        )
        async with self.db.read() as conn:
            return [rows.correction(row) for row in await conn.execute(query)]

    async def last_fix_pos(self, room: str) -> int:
        async with self.db.read() as conn:
            found = await conn.execute(select(func.max(fixes.c.pos)).where(fixes.c.room == room))
            value = found.scalar()
        return int(value) if value is not None else 0

    async def last_correction(self, room: str, by: str) -> Correction | None:
        query = (
            rows.CORRECTIONS.where(fixes.c.room == room, fixes.c.by == by)
            .order_by(fixes.c.pos.desc())
            .limit(1)
        )
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return rows.correction(row) if row else None

    async def history(self, session: Session) -> dict[int, list[Correction]]:
        """Every correction of a session's captions, by caption number, oldest first."""
        of_session = select(events.c.room, events.c.seq).where(events.c.session_id == session.id)
        query = rows.CORRECTIONS.where(tuple_(fixes.c.room, fixes.c.seq).in_(of_session)).order_by(
            fixes.c.pos
        )
        found: dict[int, list[Correction]] = {}
        async with self.db.read() as conn:
            for row in await conn.execute(query):
                fix = rows.correction(row)
                found.setdefault(fix.seq, []).append(fix)
        return found

    async def sessions(self, room: str) -> list[Session]:
        query = rows.sessions_with_counts().where(sessions.c.room == room)
        async with self.db.read() as conn:
            found = await conn.execute(query.order_by(sessions.c.id.desc()))
            return [rows.session(row) for row in found]

    async def session(self, pid: str) -> Session | None:
        query = rows.sessions_with_counts().where(sessions.c.pid == pid)
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return rows.session(row) if row else None

    async def transcript(self, session: Session) -> list[Caption]:
        query = rows.CAPTIONS.where(events.c.session_id == session.id).order_by(events.c.seq)
        async with self.db.read() as conn:
            return [rows.caption(row) for row in await conn.execute(query)]
