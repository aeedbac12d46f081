-- IRC channels of restricted rooms (orchestrator/irc_channels.py): the channel key
-- the relay sets (+k) and shows to admitted attendees, and what the relay last said
-- about protecting the channel. One row per room that ever needed a key.
CREATE TABLE irc_channel_keys (
    room TEXT PRIMARY KEY,
    channel_key TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    -- NULL until the relay reports; 1: the key (and modes) are set; 0: it could not.
    protected INTEGER,
    detail TEXT NOT NULL DEFAULT '',
    reported_at_ms INTEGER
) WITHOUT ROWID;
