-- Caption sessions, their append-only final events, and per-room caption policy.
-- Rooms are referred to by slug text, never by foreign key: a transcript outlives
-- its room (renamed or deleted) and keeps resolving under its persistent identifier.

-- The last number given to a room's events; numbers are never reused, even after
-- retention deletes events or when a room is live only.
CREATE TABLE caption_counters (
    room TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL
);

-- One row per session, kept forever: a withdrawn or expired session is a tombstone
-- so its identifier is never reused and answers 410.
CREATE TABLE caption_sessions (
    id INTEGER PRIMARY KEY,
    pid TEXT NOT NULL UNIQUE,
    room TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    last_at_ms INTEGER NOT NULL,
    ended_at_ms INTEGER,
    withdrawn_at_ms INTEGER,
    withdrawn_reason TEXT
);
CREATE INDEX caption_sessions_room ON caption_sessions (room, id);

CREATE TABLE caption_events (
    room TEXT NOT NULL,
    seq INTEGER NOT NULL,
    session_id INTEGER NOT NULL REFERENCES caption_sessions (id),
    at_ms INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    speaker TEXT NOT NULL,
    language TEXT NOT NULL,
    text TEXT NOT NULL,
    message_id TEXT NOT NULL,
    PRIMARY KEY (room, seq)
) WITHOUT ROWID;
CREATE INDEX caption_events_session ON caption_events (session_id, seq);

-- A room's own caption policy; absent: the rooms table's, then the settings' defaults.
CREATE TABLE caption_policies (
    room TEXT PRIMARY KEY,
    keep_transcript INTEGER NOT NULL DEFAULT 1,
    retention_days INTEGER
);
