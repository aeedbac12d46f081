-- mod_plenary_occupants: tell Plenary which meeting is which room, and who speaks
-- under which videobridge endpoint id.
--
-- The videobridge files transcription under the meeting id (room._data.meetingId,
-- set by jitsi-meet's mod_muc_meeting_id) and names speakers by endpoint id, which
-- is the resource of the occupant's MUC nick (room@conference.domain/<endpoint>).
-- jitsi-contrib's event_sync sends neither (its occupant_jid is the real JID), so
-- this module posts, in event_sync's shape plus those fields, to
--   <plenary_api_prefix>/room/created, /room/destroyed, /occupant/joined, /occupant/left
-- Display names come only from the JWT context.user of the joining session
-- (session.jitsi_meet_context_user, set by mod_auth_token), never from presence.
-- See docs/jitsi-events.md in Plenary for every field.
--
-- Options (set on each MUC component that loads this module):
--   plenary_api_prefix       (required) e.g. "https://plenary.example.org/api/v1/events"
--   plenary_api_secret       (required) Plenary's captions.event_sync_secret; sent as
--                            "Authorization: Bearer <secret>". Empty: nothing is posted.
--   plenary_main_muc         the main conference MUC, e.g. "conference.meet.example.org";
--                            default: this component. On the breakout component it must
--                            name the main MUC, so a breakout room finds its main room.
--   plenary_api_timeout      seconds before a request is abandoned (default 10)
--   plenary_api_retry_count  retries on a connection failure or 5xx (default 3)
--   plenary_api_retry_delay  seconds between retries (default 1)
--
-- Install: copy to a folder on prosody's plugin_paths and add "plenary_occupants" to
-- modules_enabled of the conference and the breakout MUC components (after
-- "muc_meeting_id"); then `prosodyctl reload`. deploy/jitsi/prosody-plenary.cfg.lua.snippet
-- shows the whole configuration.

local http = require "net.http";
local json = require "util.json";
local jid = require "util.jid";
local timer = require "util.timer";

local api_prefix = module:get_option_string("plenary_api_prefix");
local api_secret = module:get_option_string("plenary_api_secret", "");
local main_muc = module:get_option_string("plenary_main_muc", module.host);
local api_timeout = module:get_option_number("plenary_api_timeout", 10);
local retry_count = module:get_option_number("plenary_api_retry_count", 3);
local retry_delay = module:get_option_number("plenary_api_retry_delay", 1);

if not api_prefix or api_secret == "" then
    module:log("error", "plenary_api_prefix and plenary_api_secret must both be set; "
        .. "Plenary will not learn meeting ids or names from %s", module.host);
    return;
end

local headers = {
    ["Content-Type"] = "application/json";
    ["Authorization"] = "Bearer " .. api_secret;
};

-- POST one payload; retry on connection failure (code 0) or 5xx, give up on 4xx.
local function post(path, payload)
    local url = api_prefix .. path;
    local body = json.encode(payload);

    local function attempt(retries_left)
        local done = false;
        local request = http.request(url, { method = "POST"; headers = headers; body = body },
            function(response_body, code)
                if done then
                    return;
                end
                done = true;
                code = tonumber(code) or 0;
                if (code == 0 or code >= 500) and retries_left > 0 then
                    module:log("warn", "POST %s answered %d; retrying in %ds", url, code, retry_delay);
                    timer.add_task(retry_delay, function() attempt(retries_left - 1); end);
                elseif code >= 300 or code == 0 then
                    module:log("error", "POST %s answered %d: %s", url, code, tostring(response_body));
                end
            end);
        timer.add_task(api_timeout, function()
            if not done then
                done = true;
                http.destroy_request(request);
                module:log("warn", "POST %s timed out after %ds", url, api_timeout);
                if retries_left > 0 then
                    attempt(retries_left - 1);
                end
            end
        end);
    end

    attempt(retry_count);
end

local function is_healthcheck(room)
    return (jid.node(room.jid) or ""):find("^__jicofo%-health%-check") ~= nil;
end

-- The main room of a breakout room (mod_muc_breakout_rooms lists its breakout rooms'
-- JIDs and subjects in main_room._data.breakout_rooms), and the breakout's subject.
local function main_room_of(room)
    local host = prosody.hosts[main_muc];
    local muc = host and host.modules.muc;
    if not muc then
        return nil;
    end
    for main in muc.each_room() do
        local breakouts = main._data and main._data.breakout_rooms;
        if breakouts and breakouts[room.jid] then
            return main, breakouts[room.jid];
        end
    end
    return nil;
end

-- event_sync's room fields, plus the meeting ids; nil for a room to ignore.
local function room_fields(room)
    if is_healthcheck(room) then
        return nil;
    end
    local fields = {
        source = "mod_plenary_occupants";
        is_breakout = false;
        room_jid = room.jid;
        room_name = jid.node(room.jid);
        meeting_id = room._data.meetingId;
    };
    if module.host ~= main_muc then
        local main, subject = main_room_of(room);
        if not main then
            module:log("warn", "no main room found for breakout room %s", room.jid);
            return nil;
        end
        fields.is_breakout = true;
        fields.room_jid = main.jid;
        fields.room_name = jid.node(main.jid);
        fields.meeting_id = main._data.meetingId;
        fields.breakout_room_id = jid.node(room.jid);
        fields.breakout_room_jid = room.jid;
        fields.breakout_room_name = type(subject) == "string" and subject or nil;
        fields.breakout_meeting_id = room._data.meetingId;
    end
    if not room._data.meetingId then
        module:log("warn", "room %s has no meetingId (is muc_meeting_id enabled?)", room.jid);
        return nil;
    end
    return fields;
end

local function occupant_count(room)
    local count = 0;
    for _, occupant in room:each_occupant() do
        if jid.node(occupant.bare_jid) ~= "focus" then
            count = count + 1;
        end
    end
    return count;
end

local function on_room(event_name, path)
    return function(event)
        local fields = room_fields(event.room);
        if not fields then
            return;
        end
        fields.event_name = event_name;
        fields[event_name == "muc-room-created" and "created_at" or "destroyed_at"] = os.time();
        post(path, fields);
    end;
end

local function on_occupant(event_name, path)
    return function(event)
        local room, occupant = event.room, event.occupant;
        if jid.node(occupant.bare_jid) == "focus" then
            return;
        end
        local fields = room_fields(room);
        if not fields then
            return;
        end
        local data = {
            occupant_jid = occupant.jid;
            endpoint_id = jid.resource(occupant.nick);
        };
        if event_name == "muc-occupant-joined" then
            data.joined_at = os.time();
            local user = event.origin and event.origin.jitsi_meet_context_user;
            if type(user) == "table" then
                data.id = user.id and tostring(user.id) or nil;
                data.name = type(user.name) == "string" and user.name or nil;
                data.email = type(user.email) == "string" and user.email or nil;
                data.name_from = "token";
            end
        else
            data.left_at = os.time();
        end
        fields.event_name = event_name;
        fields.occupant = data;
        fields.active_occupants_count = occupant_count(room);
        post(path, fields);
    end;
end

-- After mod_muc_meeting_id (priority 0) has set the meeting id.
module:hook("muc-room-created", on_room("muc-room-created", "/room/created"), -10);
module:hook("muc-room-destroyed", on_room("muc-room-destroyed", "/room/destroyed"), -10);
module:hook("muc-occupant-joined", on_occupant("muc-occupant-joined", "/occupant/joined"), -10);
module:hook("muc-occupant-left", on_occupant("muc-occupant-left", "/occupant/left"), -10);
