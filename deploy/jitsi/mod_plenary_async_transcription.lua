-- Prosody module: mark every conference room for bridge-based transcription.
--
-- Jicofo starts the videobridge's transcription only for rooms whose metadata
-- (room.jitsiMetadata, kept by mod_room_metadata_component) has
-- asyncTranscription = true. Clients may not set that key, so the server must.
--
-- Install: copy to a folder on prosody's plugin_paths and enable it on the MUC
-- component, after "room_metadata":
--   Component "conference.example.org" "muc"
--       modules_enabled = { ...; "room_metadata"; "plenary_async_transcription"; }
-- then `prosodyctl reload`.
--
-- Transcription must still be switched on for the room (config.js
-- transcription.enabled and a moderator, or the room's recording metadata);
-- this module does not try to set that, as its shape is not documented.

local jid_node = require "util.jid".node;

local function is_healthcheck(room)
    -- Jitsi's health checks use rooms named __jicofo-health-check-…
    local node = jid_node(room.jid) or "";
    return node:find("^__jicofo%-health%-check") ~= nil;
end

module:hook("muc-room-created", function(event)
    local room = event.room;
    if is_healthcheck(room) then
        return;
    end
    -- mod_room_metadata_component creates room.jitsiMetadata at priority -1;
    -- this hook runs after it (lower priority runs later).
    room.jitsiMetadata = room.jitsiMetadata or {};
    room.jitsiMetadata.asyncTranscription = true;
    module:log("debug", "asyncTranscription on for %s", room.jid);
end, -2);
