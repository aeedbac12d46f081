-- Corrections by a human captioner (docs/corrections.md). A correction is a revision of
-- a caption: the caption keeps its number, caption_events holds its latest revision, and
-- every correction is kept here append-only (who, when, old and new text and speaker).
-- A correction has its own position in the room's ordered stream (pos, from the room's
-- caption_counters), so readers resuming after N get the corrections made since, once.
ALTER TABLE caption_events ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;

CREATE TABLE caption_corrections (
    room TEXT NOT NULL,
    pos INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    revision INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    by TEXT NOT NULL,
    old_text TEXT NOT NULL,
    new_text TEXT NOT NULL,
    old_speaker TEXT NOT NULL,
    new_speaker TEXT NOT NULL,
    PRIMARY KEY (room, pos)
) WITHOUT ROWID;
CREATE INDEX caption_corrections_seq ON caption_corrections (room, seq, revision);
