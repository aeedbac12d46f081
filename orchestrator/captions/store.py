"""The caption store: numbered final captions in sessions, append-only, in SQLite.

Every write goes through ``Database.write`` (one writer thread), so numbering a
caption and storing it happen in one transaction and never race. Rooms are slug
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

import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from orchestrator.captions.model import Caption, Correction, Session
from orchestrator.captions.pid import new_pid
from orchestrator.db import Database
from plenary.events import CaptionEvent
from plenary.settings import CaptionsSettings
from plenary.wire import MAX_DURATION_MS, duration_ms, scrub, stored_ms

DAY_MS = 86_400_000
PID_ATTEMPTS = 8
# Text columns are read as bytes: a row written by an older version may hold invalid
# UTF-8 (or lone surrogates), which sqlite3 would fail to decode.
CAPTION_COLUMNS = (
    "SELECT e.room, e.seq, s.pid, e.at_ms, e.duration_ms, CAST(e.speaker AS BLOB),"
    " CAST(e.language AS BLOB), CAST(e.text AS BLOB), CAST(e.message_id AS BLOB), e.revision"
)
CORRECTION_COLUMNS = (
    "SELECT room, pos, seq, revision, at_ms, CAST(by AS BLOB), CAST(new_text AS BLOB),"
    " CAST(new_speaker AS BLOB), CAST(old_text AS BLOB), CAST(old_speaker AS BLOB)"
    " FROM caption_corrections"
)
SESSION_COLUMNS = (
    "SELECT s.id, s.pid, s.room, s.started_at_ms, s.last_at_ms, s.ended_at_ms,"
    " s.withdrawn_at_ms, CAST(s.withdrawn_reason AS BLOB),"
)


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

    # ---- writes ---------------------------------------------------------------

    async def append(self, room: str, event: CaptionEvent, at_ms: int, keep: bool) -> Caption:
        """Number a final caption; store it in the room's open session when ``keep``.

        A final whose ``event_id`` is already known is not stored again: a ``Duplicate``
        with the number it got the first time comes back.
        """
        duration = duration_ms(event.start, event.end)
        gap_ms = int(self.settings.session_gap_minutes * 60_000)

        def run(conn: sqlite3.Connection) -> Caption:
            if event.event_id:
                row = conn.execute(
                    "SELECT room, seq FROM caption_event_ids WHERE event_id = ?",
                    (event.event_id,),
                ).fetchone()
                if row is not None:
                    return Duplicate(
                        row[0], row[1], "", at_ms, duration, event.speaker, event.language,
                        event.text, event.message_id,
                    )  # fmt: skip
            seq = _next_seq(conn, room)
            if event.event_id:
                conn.execute(
                    "INSERT INTO caption_event_ids VALUES (?, ?, ?)", (event.event_id, room, seq)
                )
            session_id, pid = None, ""
            if keep:
                session_id, pid = _open_session(conn, room, at_ms, gap_ms, at_ms - duration)
            caption = Caption(
                room,
                seq,
                pid,
                at_ms,
                duration,
                event.speaker,
                event.language,
                event.text,
                event.message_id,
            )
            if session_id is not None:
                # The stored row is the caption with the session's row id for its pid.
                conn.execute(
                    "INSERT INTO caption_events (room, seq, session_id, at_ms, duration_ms,"
                    " speaker, language, text, message_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        room,
                        seq,
                        session_id,
                        at_ms,
                        duration,
                        caption.speaker,
                        caption.language,
                        caption.text,
                        caption.message_id,
                    ),
                )
                conn.execute(
                    "UPDATE caption_sessions SET last_at_ms = max(last_at_ms, ?) WHERE id = ?",
                    (at_ms, session_id),
                )
            return caption

        return await self.db.write(run)

    async def correct(
        self, room: str, seq: int, text: str | None, speaker: str | None, by: str,
        at_ms: int, window_ms: int,
    ) -> Correction:  # fmt: skip
        """Store a revision of stored caption ``seq`` (None: that field unchanged): the
        caption row holds it from now on, the correction row keeps both versions; the
        correction takes the room's next number as its stream position."""

        def run(conn: sqlite3.Connection) -> Correction:
            row = conn.execute(
                "SELECT CAST(e.text AS BLOB), CAST(e.speaker AS BLOB), e.revision,"
                " coalesce(s.ended_at_ms, s.last_at_ms) FROM caption_events e"
                " JOIN caption_sessions s ON s.id = e.session_id"
                " WHERE e.room = ? AND e.seq = ? AND s.withdrawn_at_ms IS NULL",
                (room, seq),
            ).fetchone()
            if row is None:
                raise NoSuchCaption(f"room {room!r} has no stored caption {seq}")
            if at_ms > stored_ms(row[3]) + window_ms:
                raise TooLate(f"caption {seq}'s session ended more than the correction window ago")
            old_text, old_speaker = scrub(row[0]), scrub(row[1])
            fix = Correction(
                room, _next_seq(conn, room), seq, int(row[2]) + 1, at_ms, by,
                old_text if text is None else text, old_speaker if speaker is None else speaker,
                old_text, old_speaker,
            )  # fmt: skip
            conn.execute(
                "INSERT INTO caption_corrections VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (room, fix.pos, seq, fix.revision, at_ms, fix.by, old_text, fix.text,
                 old_speaker, fix.speaker),
            )  # fmt: skip
            conn.execute(
                "UPDATE caption_events SET text = ?, speaker = ?, revision = ?"
                " WHERE room = ? AND seq = ?",
                (fix.text, fix.speaker, fix.revision, room, seq),
            )
            return fix

        return await self.db.write(run)

    async def number(self, room: str) -> int:
        """The room's next number, for a correction of a caption kept in memory only."""
        return await self.db.write(lambda conn: _next_seq(conn, room))

    async def start_session(self, room: str, at_ms: int, keep: bool) -> str | None:
        """End the room's open session and begin a new one (Jigasi START) when ``keep``;
        its pid."""

        def run(conn: sqlite3.Connection) -> str | None:
            _end_open(conn, room, at_ms)
            if not keep:
                return None
            return _create_session(conn, room, at_ms)[1]

        return await self.db.write(run)

    async def end_session(self, room: str, at_ms: int) -> None:
        """End the room's open session (Jigasi END); the next caption begins a new one."""
        await self.db.write(lambda conn: _end_open(conn, room, at_ms))

    async def withdraw(self, pid: str, reason: str, at_ms: int | None = None) -> bool:
        """Delete a session's captions, leaving a stub that explains why; False if unknown."""

        def run(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT id FROM caption_sessions WHERE pid = ?", (pid,)).fetchone()
            if row is None:
                return False
            _withdraw(conn, row[0], reason, at_ms or now_ms())
            return True

        return await self.db.write(run)

    async def expire(self, retention: dict[str, int], at_ms: int | None = None) -> list[str]:
        """Withdraw every session older than its room's retention (``retention[room]``
        days, else ``captions.retention_days``; 0: forever); their pids."""
        now = at_ms or now_ms()

        def run(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT id, pid, room, last_at_ms FROM caption_sessions"
                " WHERE withdrawn_at_ms IS NULL ORDER BY id"
            ).fetchall()
            days: dict[str, int] = {}
            expired = []
            for session_id, pid, room, stored_last in rows:
                if room not in days:
                    days[room] = retention.get(room.split(".", 1)[0], self.settings.retention_days)
                last_at = stored_ms(stored_last)
                if days[room] and last_at < now - days[room] * DAY_MS:
                    reason = f"Removed after {days[room]} days under the room's retention policy."
                    _withdraw(conn, session_id, reason, now)
                    expired.append(pid)
            return expired

        return await self.db.write(run)

    # ---- reads ----------------------------------------------------------------

    async def last_seq(self, room: str) -> int:
        row = await self.db.read(
            lambda c: c.execute(
                "SELECT last_seq FROM caption_counters WHERE room = ?", (room,)
            ).fetchone()
        )
        return int(row[0]) if row else 0

    async def after(self, room: str, after: int, limit: int = 1000) -> list[Caption]:
        rows = await self.db.read(
            lambda c: c.execute(
                CAPTION_COLUMNS + " FROM caption_events e"
                " JOIN caption_sessions s ON s.id = e.session_id"
                " WHERE e.room = ? AND e.seq > ? ORDER BY e.seq LIMIT ?",
                (room, after, limit),
            ).fetchall()
        )
        return [_caption(row) for row in rows]

    async def latest(self, room: str, count: int) -> list[Caption]:
        rows = await self.db.read(
            lambda c: c.execute(
                CAPTION_COLUMNS + " FROM caption_events e"
                " JOIN caption_sessions s ON s.id = e.session_id"
                " WHERE e.room = ? ORDER BY e.seq DESC LIMIT ?",
                (room, count),
            ).fetchall()
        )
        return [_caption(row) for row in reversed(rows)]

    async def corrections_after(self, room: str, after: int, limit: int) -> list[Correction]:
        rows = await self.db.read(
            lambda c: c.execute(
                CORRECTION_COLUMNS + " WHERE room = ? AND pos > ? ORDER BY pos LIMIT ?",
                (room, after, limit),
            ).fetchall()
        )
        return [_correction(row) for row in rows]

    async def last_fix_pos(self, room: str) -> int:
        row = await self.db.read(
            lambda c: c.execute(
                "SELECT max(pos) FROM caption_corrections WHERE room = ?", (room,)
            ).fetchone()
        )
        return int(row[0]) if row and row[0] is not None else 0

    async def last_correction(self, room: str, by: str) -> Correction | None:
        row = await self.db.read(
            lambda c: c.execute(
                CORRECTION_COLUMNS + " WHERE room = ? AND by = ? ORDER BY pos DESC LIMIT 1",
                (room, by),
            ).fetchone()
        )
        return _correction(row) if row else None

    async def history(self, session: Session) -> dict[int, list[Correction]]:
        """Every correction of a session's captions, by caption number, oldest first."""
        rows = await self.db.read(
            lambda c: c.execute(
                CORRECTION_COLUMNS + " WHERE (room, seq) IN (SELECT room, seq FROM"
                " caption_events WHERE session_id = ?) ORDER BY pos",
                (session.id,),
            ).fetchall()
        )
        found: dict[int, list[Correction]] = {}
        for row in rows:
            fix = _correction(row)
            found.setdefault(fix.seq, []).append(fix)
        return found

    async def sessions(self, room: str) -> list[Session]:
        rows = await self.db.read(
            lambda c: c.execute(
                SESSION_COLUMNS + " count(e.seq) FROM caption_sessions s"
                " LEFT JOIN caption_events e ON e.session_id = s.id"
                " WHERE s.room = ? GROUP BY s.id ORDER BY s.id DESC",
                (room,),
            ).fetchall()
        )
        return [_session(row) for row in rows]

    async def session(self, pid: str) -> Session | None:
        row = await self.db.read(
            lambda c: c.execute(
                SESSION_COLUMNS + " count(e.seq) FROM caption_sessions s"
                " LEFT JOIN caption_events e ON e.session_id = s.id"
                " WHERE s.pid = ? GROUP BY s.id",
                (pid,),
            ).fetchone()
        )
        return _session(row) if row else None

    async def transcript(self, session: Session) -> list[Caption]:
        rows = await self.db.read(
            lambda c: c.execute(
                CAPTION_COLUMNS + " FROM caption_events e"
                " JOIN caption_sessions s ON s.id = e.session_id"
                " WHERE e.session_id = ? ORDER BY e.seq",
                (session.id,),
            ).fetchall()
        )
        return [_caption(row) for row in rows]


# ---- rows to what pages show: any stored row renders ---------------------------------


def _caption(row: tuple[Any, ...]) -> Caption:
    """A stored caption as pages and exports can show it, whatever an older version or a
    corrupted producer left: times clamped to 1970 … 2100, durations to 0 … 1 h, text
    with U+FFFD for invalid bytes and no control characters."""
    room, seq, pid, at, duration, speaker, language, text, message_id, revision = row
    return Caption(
        str(room), int(seq), str(pid), stored_ms(at), min(stored_ms(duration), MAX_DURATION_MS),
        scrub(speaker), scrub(language), scrub(text), scrub(message_id), True, int(revision),
    )  # fmt: skip


def _correction(row: tuple[Any, ...]) -> Correction:
    room, pos, seq, revision, at, by, text, speaker, old_text, old_speaker = row
    return Correction(
        str(room), int(pos), int(seq), int(revision), stored_ms(at), scrub(by), scrub(text),
        scrub(speaker), scrub(old_text), scrub(old_speaker),
    )  # fmt: skip


def _session(row: tuple[Any, ...]) -> Session:
    sid, pid, room, started, last, ended, withdrawn, reason, events = row
    start = stored_ms(started)
    return Session(
        int(sid), str(pid), str(room), start, max(start, stored_ms(last, start)),
        None if ended is None else max(start, stored_ms(ended, start)),
        None if withdrawn is None else stored_ms(withdrawn),
        None if reason is None else scrub(reason), int(events),
    )  # fmt: skip


# ---- helpers run inside one write transaction -------------------------------------


def _next_seq(conn: sqlite3.Connection, room: str) -> int:
    row = conn.execute(
        "INSERT INTO caption_counters VALUES (?, 1) ON CONFLICT (room)"
        " DO UPDATE SET last_seq = last_seq + 1 RETURNING last_seq",
        (room,),
    ).fetchone()
    return int(row[0])


def _open_session(
    conn: sqlite3.Connection, room: str, at_ms: int, gap_ms: int, speech_ms: int
) -> tuple[int, str]:
    """The room's open session, or a new one that starts when this speech did
    (``speech_ms``), so the transcript's first cue lasts as long as its speech."""
    row = conn.execute(
        "SELECT id, pid, last_at_ms FROM caption_sessions WHERE room = ?"
        " AND ended_at_ms IS NULL AND withdrawn_at_ms IS NULL ORDER BY id DESC LIMIT 1",
        (room,),
    ).fetchone()
    if row is not None:
        if -gap_ms <= at_ms - stored_ms(row[2], at_ms + gap_ms + 1) <= gap_ms:
            return int(row[0]), str(row[1])
        # Past the gap, or a session whose last caption lies in the future (older versions
        # took any timestamp): ended, never joined.
        conn.execute("UPDATE caption_sessions SET ended_at_ms = last_at_ms WHERE id = ?", (row[0],))
    return _create_session(conn, room, min(speech_ms, at_ms), at_ms)


def _create_session(
    conn: sqlite3.Connection, room: str, at_ms: int, last_ms: int | None = None
) -> tuple[int, str]:
    for _ in range(PID_ATTEMPTS):
        pid = new_pid()
        try:
            cursor = conn.execute(
                "INSERT INTO caption_sessions (pid, room, started_at_ms, last_at_ms)"
                " VALUES (?, ?, ?, ?)",
                (pid, room, at_ms, at_ms if last_ms is None else last_ms),
            )
        except sqlite3.IntegrityError:
            continue  # that identifier exists: never reuse one, draw another
        assert cursor.lastrowid is not None
        return cursor.lastrowid, pid
    raise RuntimeError("could not draw an unused persistent identifier")


def _end_open(conn: sqlite3.Connection, room: str, at_ms: int) -> None:
    conn.execute(
        "UPDATE caption_sessions SET ended_at_ms = max(last_at_ms, ?)"
        " WHERE room = ? AND ended_at_ms IS NULL",
        (at_ms, room),
    )


def _withdraw(conn: sqlite3.Connection, session_id: int, reason: str, at_ms: int) -> None:
    conn.execute(
        "DELETE FROM caption_corrections WHERE (room, seq) IN"
        " (SELECT room, seq FROM caption_events WHERE session_id = ?)",
        (session_id,),
    )
    conn.execute("DELETE FROM caption_events WHERE session_id = ?", (session_id,))
    conn.execute(
        "UPDATE caption_sessions SET withdrawn_at_ms = ?, withdrawn_reason = ?,"
        " ended_at_ms = coalesce(ended_at_ms, last_at_ms) WHERE id = ?",
        (at_ms, reason, session_id),
    )
