-- Runs deploy/prosody/mod_plenary_occupants.lua under plain Lua 5.4 with the few
-- Prosody APIs it uses stood in, plays a meeting (room created, two joins, a breakout
-- room, a move, a leave, destroy) and prints every HTTP request the module makes, one
-- JSON object a line: {"url", "authorization", "body"}. tests/test_jitsi_events.py
-- posts those bodies to the real app.
--
-- usage: lua5.4 tests/prosody_harness.lua <module.lua> [codes]
-- ``codes`` (e.g. "503,503,202") are the answers to each payload's successive
-- attempts; default 202. Retry timers run at the end, in order.

local module_path = assert(arg[1], "usage: prosody_harness.lua <module.lua> [codes]");
local codes = {};
for code in (arg[2] or "202"):gmatch("%d+") do codes[#codes + 1] = tonumber(code); end
local attempts = {};  -- body → attempts so far
local tasks = {};

local function encode(value)
    local kind = type(value);
    if kind == "string" then
        return '"' .. value:gsub('[%c"\\]', function(c)
            return string.format("\\u%04x", c:byte());
        end) .. '"';
    elseif kind == "number" then
        return string.format("%d", value);
    elseif kind == "boolean" then
        return tostring(value);
    elseif kind == "table" then
        local keys = {};
        for k in pairs(value) do keys[#keys + 1] = k; end
        table.sort(keys);
        local parts = {};
        for _, k in ipairs(keys) do
            parts[#parts + 1] = encode(k) .. ":" .. encode(value[k]);
        end
        return "{" .. table.concat(parts, ",") .. "}";
    end
    error("cannot encode " .. kind);
end

package.preload["util.json"] = function() return { encode = encode }; end
package.preload["util.timer"] = function()
    return { add_task = function(delay, task) tasks[#tasks + 1] = { delay, task }; end };
end
package.preload["util.jid"] = function()
    local function split(j)
        local node, host, resource = j:match("^([^@/]+)@([^/]+)/?(.*)$");
        if not node then
            host, resource = j:match("^([^/]+)/?(.*)$");
        end
        return node, host, resource ~= "" and resource or nil;
    end
    return {
        split = split;
        node = function(j) return (split(j)); end;
        resource = function(j) return select(3, split(j)); end;
    };
end
package.preload["net.http"] = function()
    return {
        request = function(url, options, callback)
            local n = (attempts[options.body] or 0) + 1;
            attempts[options.body] = n;
            local code = codes[math.min(n, #codes)];
            print(encode({
                url = url;
                authorization = options.headers["Authorization"];
                body = options.body;
                code = code;
            }));
            callback("", code);
            return {};
        end;
        destroy_request = function() end;
    };
end

local MAIN, BREAKOUT = "conference.meet.example.org", "breakout.meet.example.org";
local main_rooms = {};
prosody = { hosts = {} };
prosody.hosts[MAIN] = { modules = { muc = { each_room = function()
    local i = 0;
    return function() i = i + 1; return main_rooms[i]; end;
end } } };

-- Load the module once per MUC component, as Prosody does.
local function load(host)
    local hooks = {};
    local options = {
        plenary_api_prefix = "http://plenary.test/api/v1/events";
        plenary_api_secret = "prosody-event-secret";
        plenary_main_muc = MAIN;
    };
    local env = setmetatable({}, { __index = _G });
    env.module = {
        host = host;
        log = function() end;
        get_option_string = function(_, name, default) return options[name] or default; end;
        get_option_number = function(_, name, default) return options[name] or default; end;
        hook = function(_, name, handler) hooks[name] = handler; end;
    };
    assert(loadfile(module_path, "t", env))();
    return hooks;
end

local main_hooks, breakout_hooks = load(MAIN), load(BREAKOUT);

local function new_room(jid, meeting_id)
    local room = { jid = jid; _data = { meetingId = meeting_id }; occupants = {} };
    function room:each_occupant()
        local i = 0;
        return function()
            i = i + 1;
            local o = self.occupants[i];
            if o then return o.nick, o; end
        end;
    end
    return room;
end

local function occupant(room, endpoint, user)
    local o = {
        jid = user and (user.id .. "@meet.example.org/res-" .. endpoint) or "anon@meet.example.org/x";
        bare_jid = user and (user.id .. "@meet.example.org") or "anon@meet.example.org";
        nick = room.jid .. "/" .. endpoint;
    };
    return o, { jitsi_meet_context_user = user };
end

local ana = { id = "ldap:ana", name = "Ana Kim", email = "ana@example.org", moderator = true };
local main = new_room("keynote@" .. MAIN, "meeting-main-1");
main_rooms[1] = main;
main_hooks["muc-room-created"]({ room = main });

local focus = { jid = "focus@auth.meet.example.org/f", bare_jid = "focus@auth.meet.example.org",
    nick = main.jid .. "/focus" };
main_hooks["muc-occupant-joined"]({ room = main; occupant = focus; origin = {} });

local ana_main, ana_session = occupant(main, "a1b2c3d4", ana);
main.occupants[1] = ana_main;
main_hooks["muc-occupant-joined"]({ room = main; occupant = ana_main; origin = ana_session });
local guest = occupant(main, "e5f6a7b8", nil);
main_hooks["muc-occupant-joined"]({ room = main; occupant = guest; origin = {} });

local breakout_jid = "5f0e8b7c-0000-4000-8000-00000000abcd@" .. BREAKOUT;
main._data.breakout_rooms = { [breakout_jid] = "Breakout room #1" };
local breakout = new_room(breakout_jid, "meeting-breakout-1");
breakout_hooks["muc-room-created"]({ room = breakout });
main.occupants[1] = nil;
main_hooks["muc-occupant-left"]({ room = main; occupant = ana_main; origin = ana_session });
local ana_breakout = occupant(breakout, "a1b2c3d4", ana);
breakout_hooks["muc-occupant-joined"]({ room = breakout; occupant = ana_breakout; origin = ana_session });

local health = new_room("__jicofo-health-check-1234@" .. MAIN, "meeting-health");
main_hooks["muc-room-created"]({ room = health });
main_hooks["muc-room-destroyed"]({ room = main });

-- Retries (and request timeouts, which find their request answered) run last.
local i = 0;
while i < #tasks do
    i = i + 1;
    tasks[i][2]();
end
