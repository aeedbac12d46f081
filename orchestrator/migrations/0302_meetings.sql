-- Jitsi meetings and their occupants, learned from Prosody (mod_plenary_occupants,
-- docs/jitsi-events.md) and from Jigasi's JOIN posts, so captions filed by meeting id
-- and endpoint id reach the right room under the right name, across restarts.

-- One row per Jitsi meeting id (the videobridge's transcription sessionId). ``room``
-- is where its captions are filed: the main room's slug, or for a breakout room
-- "<slug>.breakout-<breakout id>".
CREATE TABLE jitsi_meetings (
    meeting_id TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    room_jid TEXT NOT NULL,
    main_room TEXT NOT NULL,
    breakout_id TEXT,
    breakout_name TEXT,
    created_at_ms INTEGER NOT NULL,
    destroyed_at_ms INTEGER
);
CREATE INDEX jitsi_meetings_room_jid ON jitsi_meetings (room_jid);

-- Who spoke under an endpoint id. ``scope`` is 'meeting:<meeting id>' for videobridge
-- endpoints and 'jigasi:<room>' for Jigasi participant ids. ``name`` is the JWT
-- context.user name Plenary issued ('' when the occupant had none).
CREATE TABLE jitsi_occupants (
    scope TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    name TEXT NOT NULL,
    user_id TEXT NOT NULL,
    joined_at_ms INTEGER NOT NULL,
    left_at_ms INTEGER,
    PRIMARY KEY (scope, endpoint)
) WITHOUT ROWID;
