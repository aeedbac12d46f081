-- Personal read tokens of caption readers without a browser session (curl, feed and
-- terminal clients). Only the token's sha256 is kept; the token itself is shown once.
-- The owner's identity (as at issue) is kept so the room's current policy can be
-- asked again at every use.
CREATE TABLE read_tokens (
    id INTEGER PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    room TEXT NOT NULL,
    owner TEXT NOT NULL,
    identity TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER,
    revoked_by TEXT,
    last_used_at_ms INTEGER
);
CREATE INDEX read_tokens_room ON read_tokens (room, owner);
