-- Producers' event ids of stored finals, so a final retried after a lost answer (the
-- orchestrator killed after its commit, a timeout) is numbered and stored once. Kept
-- when retention or a withdrawal deletes the caption, so a late retry stays a duplicate.
CREATE TABLE caption_event_ids (
    event_id TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    seq INTEGER NOT NULL
) WITHOUT ROWID;
