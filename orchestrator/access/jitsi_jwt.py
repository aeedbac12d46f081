"""Jitsi join tokens and links (docs/protocols.md §3: prosody's token/util.lib.lua).

    token = mint(settings.jitsi, room="keynote", identity=alice, moderator=True)
    join_url(settings.jitsi, "keynote", token, low_bandwidth=True)
    # https://meet.example.org/keynote?jwt=eyJ…#config.startAudioOnly=true&…

Prosody checks: header ``typ`` JWT and ``alg`` its signature_algorithm (HS256);
``iss`` among the accepted issuers (app_id), ``aud`` among the accepted audiences,
``sub`` the domain or tenant, ``room`` the room joined (it lowercases the claim),
``exp`` and ``nbf``. ``mod_token_affiliation`` makes ``affiliation: owner`` (or
``moderator: true``) a moderator. Features absent from ``context.features`` are off.
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import quote, urlencode

import jwt

from orchestrator.access.identity import Identity
from plenary.settings import JitsiSettings

# Jitsi lowercases room names and prosody compares the token's lowercased `room` with
# the MUC node; a conservative subset keeps links, JIDs and file names safe.
ROOM_NAME = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?")

# Hash overrides for people on a poor connection: audio only, at most one video
# (the speaker's), and a small picture when they turn video on.
LOW_BANDWIDTH: dict[str, str] = {
    "config.startAudioOnly": "true",
    "config.channelLastN": "1",
    "config.resolution": "180",
    "config.constraints.video.height.ideal": "180",
}


class TokenError(ValueError):
    """A token cannot be issued: Jitsi is not configured, or the room name is invalid."""


def is_valid_room_name(name: str) -> bool:
    """Lowercase letters, digits, '.', '_' and '-' (not at either end), 1 to 64 long."""
    return ROOM_NAME.fullmatch(name) is not None


def check_room_name(name: str) -> str:
    if not is_valid_room_name(name):
        raise TokenError(
            f"{name!r} is not a valid Jitsi room name: use 1 to 64 lowercase letters, "
            "digits, '.', '_' or '-', starting and ending with a letter or digit"
        )
    return name


def mint(
    settings: JitsiSettings,
    *,
    room: str,
    identity: Identity,
    moderator: bool,
    now: float | None = None,
    avatar: str | None = None,
) -> str:
    """A signed HS256 token that lets ``identity`` into ``room`` for token_lifetime seconds."""
    if not settings.app_secret:
        raise TokenError(
            "jitsi.app_secret is not set: Plenary cannot issue Jitsi tokens until it holds "
            "the same secret as prosody's app_secret"
        )
    check_room_name(room)
    issued = int(time.time() if now is None else now)
    user: dict[str, Any] = {
        "id": f"{identity.source}:{identity.user_id}",
        "name": identity.display_name or identity.username,
        "moderator": moderator,
        "affiliation": "owner" if moderator else "member",
    }
    if identity.email:
        user["email"] = identity.email
    if avatar:
        user["avatar"] = avatar
    granted = settings.moderator_features if moderator else settings.member_features
    # Every feature Plenary knows is named, false unless granted: an absent
    # context.features would leave the decision to Jitsi's defaults.
    features = {name: False for name in (*settings.moderator_features, *settings.member_features)}
    features.update({name: True for name in granted})
    claims: dict[str, Any] = {
        "iss": settings.app_id,
        "aud": settings.audience,
        "sub": settings.subject or settings.domain,
        "room": room,
        "iat": issued,
        "nbf": issued - settings.clock_skew,
        "exp": issued + settings.token_lifetime,
        "context": {"user": user, "features": features},
    }
    return jwt.encode(claims, settings.app_secret, algorithm="HS256", headers={"typ": "JWT"})


def join_url(settings: JitsiSettings, room: str, token: str, *, low_bandwidth: bool) -> str:
    """``https://<domain>/<room>?jwt=<token>``, with the low-bandwidth hash when asked."""
    check_room_name(room)
    url = f"https://{settings.domain}/{quote(room, safe='')}?{urlencode({'jwt': token})}"
    if low_bandwidth:
        url += "#" + urlencode(LOW_BANDWIDTH)
    return url
