-- Prosody module: give each occupant of a conference the MUC affiliation its Jitsi
-- token asks for. Plenary's orchestrator issues the tokens (docs/protocols.md section 3):
-- context.user.affiliation owner, moderator or teacher, or context.user.moderator
-- true, makes an owner (a Jitsi moderator); any other token makes a member.
-- Sessions without a token (jicofo, the videobridge) are left alone.
--
-- Enable on the conference MUC component after "token_verification", and set
-- jicofo's conference.enable-auto-owner = false so the first to join is not
-- made moderator regardless of the token.

local jid_bare = require "util.jid".bare;

local OWNER = { owner = true, moderator = true, teacher = true };

local function affiliation_for(user)
    if type(user) ~= "table" then
        return "member";
    end
    if OWNER[user.affiliation] or user.moderator == true or user.moderator == "true" then
        return "owner";
    end
    return "member";
end

module:hook("muc-occupant-joined", function(event)
    local session = event.origin;
    if not session or not session.auth_token then
        return;
    end
    local affiliation = affiliation_for(session.jitsi_meet_context_user);
    local bare = jid_bare(event.occupant.bare_jid or event.stanza.attr.from);
    event.room:set_affiliation(true, bare, affiliation);
    module:log("debug", "%s is %s in %s (token)", bare, affiliation, event.room.jid);
end, 2);
