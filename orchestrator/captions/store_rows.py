"""The caption store's statements inside one transaction, and its rows as models.

``lock_room`` is how nodes sharing one PostgreSQL number without gaps: every write of a
room (a caption, a correction, a session started or ended) first locks the room's
``caption_counters`` row (made if missing) and holds it until its transaction ends, so
taking numbers and the session bookkeeping that goes with them happen one transaction
at a time per room. SQLite has one writer anyway (``Database.write``).

Any stored row renders: times clamped to 1970 … 2100, durations to 0 … 1 h, text with
U+FFFD for invalid bytes and no control characters (rows written by older versions or a
corrupted producer).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, case, delete, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.captions.model import Caption, Correction, Session
from orchestrator.captions.pid import new_pid
from orchestrator.db import upsert
from orchestrator.schema import (
    caption_corrections,
    caption_counters,
    caption_events,
    caption_sessions,
)
from plenary.wire import MAX_DURATION_MS, scrub, stored_ms

PID_ATTEMPTS = 8

events, sessions, counters, fixes = (
    caption_events,
    caption_sessions,
    caption_counters,
    caption_corrections,
)

CAPTIONS = select(
    events.c.room, events.c.seq, sessions.c.pid, events.c.at_ms, events.c.duration_ms,
    events.c.speaker, events.c.language, events.c.text, events.c.message_id, events.c.revision,
).join_from(events, sessions, sessions.c.id == events.c.session_id)  # fmt: skip

CORRECTIONS = select(
    fixes.c.room, fixes.c.pos, fixes.c.seq, fixes.c.revision, fixes.c.at_ms, fixes.c.by,
    fixes.c.new_text, fixes.c.new_speaker, fixes.c.old_text, fixes.c.old_speaker,
)  # fmt: skip


def sessions_with_counts() -> Select[Any]:
    return (
        select(
            sessions.c.id,
            sessions.c.pid,
            sessions.c.room,
            sessions.c.started_at_ms,
            sessions.c.last_at_ms,
            sessions.c.ended_at_ms,
            sessions.c.withdrawn_at_ms,
            sessions.c.withdrawn_reason,
            func.count(events.c.seq),
        )  # fmt: skip
        .select_from(sessions.outerjoin(events, events.c.session_id == sessions.c.id))
        .group_by(sessions.c.id)
    )


def later(column: Any, at_ms: int) -> Any:
    """The larger of ``column`` and ``at_ms`` (SQLite's max(a, b) is PostgreSQL's greatest)."""
    return case((column > at_ms, column), else_=at_ms)


# ---- inside one write transaction -------------------------------------------------------


async def lock_room(conn: AsyncConnection, room: str) -> int:
    """Lock the room's counter row until the transaction ends (made at 0 if missing);
    the last number given. One statement: an upsert locks the row it finds or makes."""
    insert = upsert(conn, counters).values(room=room, last_seq=0)
    found = await conn.execute(
        insert.on_conflict_do_update(
            index_elements=[counters.c.room], set_={"last_seq": counters.c.last_seq}
        ).returning(counters.c.last_seq)
    )
    return int(found.scalar_one())


async def next_seq(conn: AsyncConnection, room: str) -> int:
    """The room's next number (after ``lock_room`` in the same transaction)."""
    found = await conn.execute(
        update(counters)
        .where(counters.c.room == room)
        .values(last_seq=counters.c.last_seq + 1)
        .returning(counters.c.last_seq)
    )
    return int(found.scalar_one())


async def open_session(
    conn: AsyncConnection, room: str, at_ms: int, gap_ms: int, speech_ms: int
) -> tuple[int, str]:
    """The room's open session, or a new one that starts when this speech did
    (``speech_ms``), so the transcript's first cue lasts as long as its speech."""
    row = (
        await conn.execute(
            select(sessions.c.id, sessions.c.pid, sessions.c.last_at_ms)
            .where(
                sessions.c.room == room,
                sessions.c.ended_at_ms.is_(None),
                sessions.c.withdrawn_at_ms.is_(None),
            )
            .order_by(sessions.c.id.desc())
            .limit(1)
        )
    ).first()
    if row is not None:
        if -gap_ms <= at_ms - stored_ms(row[2], at_ms + gap_ms + 1) <= gap_ms:
            return int(row[0]), str(row[1])
        # Past the gap, or a session whose last caption lies in the future (older versions
        # took any timestamp): ended, never joined.
        await conn.execute(
            update(sessions)
            .where(sessions.c.id == row[0])
            .values(ended_at_ms=sessions.c.last_at_ms)
        )
    return await create_session(conn, room, min(speech_ms, at_ms), at_ms)


async def create_session(
    conn: AsyncConnection, room: str, at_ms: int, last_ms: int | None = None
) -> tuple[int, str]:
    for _ in range(PID_ATTEMPTS):
        pid = new_pid()
        made = await conn.execute(
            upsert(conn, sessions)
            .values(pid=pid, room=room, started_at_ms=at_ms,
                    last_at_ms=at_ms if last_ms is None else last_ms)
            .on_conflict_do_nothing(index_elements=[sessions.c.pid])
            .returning(sessions.c.id)
        )  # fmt: skip
        row = made.first()
        if row is not None:
            return int(row[0]), pid
        # that identifier exists: never reuse one, draw another
    raise RuntimeError("could not draw an unused persistent identifier")


async def end_open(conn: AsyncConnection, room: str, at_ms: int) -> None:
    await conn.execute(
        update(sessions)
        .where(sessions.c.room == room, sessions.c.ended_at_ms.is_(None))
        .values(ended_at_ms=later(sessions.c.last_at_ms, at_ms))
    )


async def withdraw(conn: AsyncConnection, session_id: int, reason: str, at_ms: int) -> None:
    """Delete a session's captions and their corrections; its row stays as a stub."""
    of_session = select(events.c.room, events.c.seq).where(events.c.session_id == session_id)
    await conn.execute(delete(fixes).where(tuple_(fixes.c.room, fixes.c.seq).in_(of_session)))
    await conn.execute(delete(events).where(events.c.session_id == session_id))
    await conn.execute(
        update(sessions)
        .where(sessions.c.id == session_id)
        .values(
            withdrawn_at_ms=at_ms,
            withdrawn_reason=reason,
            ended_at_ms=func.coalesce(sessions.c.ended_at_ms, sessions.c.last_at_ms),
        )
    )


# ---- rows to what pages show ------------------------------------------------------------


def caption(row: Any) -> Caption:
    room, seq, pid, at, duration, speaker, language, text, message_id, revision = row
    return Caption(
        str(room), int(seq), str(pid), stored_ms(at), min(stored_ms(duration), MAX_DURATION_MS),
        scrub(speaker), scrub(language), scrub(text), scrub(message_id), True, int(revision),
    )  # fmt: skip


def correction(row: Any) -> Correction:
    room, pos, seq, revision, at, by, text, speaker, old_text, old_speaker = row
    return Correction(
        str(room), int(pos), int(seq), int(revision), stored_ms(at), scrub(by), scrub(text),
        scrub(speaker), scrub(old_text), scrub(old_speaker),
    )  # fmt: skip


def session(row: Any) -> Session:
    sid, pid, room, started, last, ended, withdrawn, reason, count = row
    start = stored_ms(started)
    return Session(
        int(sid), str(pid), str(room), start, max(start, stored_ms(last, start)),
        None if ended is None else max(start, stored_ms(ended, start)),
        None if withdrawn is None else stored_ms(withdrawn),
        None if reason is None else scrub(reason), int(count),
    )  # fmt: skip
