"""Read tokens on the room page: make one, list them, revoke one.

An attendee the room admits makes a personal token for clients without a browser
session; it is shown once, with ready-made links. They see and revoke their own
tokens; the room's moderators (and organizers) see and revoke everyone's.

    POST /r/<slug>/read-tokens               days=7      → the room page, token shown once
    POST /r/<slug>/read-tokens/<id>/revoke               → back to the room page
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from aiohttp import web

from orchestrator import metrics
from orchestrator.access.identity import Identity
from orchestrator.access.policy import decide
from orchestrator.access.read_tokens import MAX_DAYS, ReadToken, ReadTokens, owner_of
from orchestrator.app_keys import db_key, settings_key
from orchestrator.captions.readers import may_read
from orchestrator.rooms.model import Room
from orchestrator.rooms.policy import access_policy
from orchestrator.web.organizers import is_organizer
from orchestrator.web.sessions import current_identity
from orchestrator.web.web_keys import wiki_key

log = logging.getLogger(__name__)

DAYS = (1, 7, 30, MAX_DAYS)


async def token_context(request: web.Request, room: Room) -> dict[str, Any]:
    """What the room page shows about reading: may ``me`` read, make and manage tokens."""
    me = await current_identity(request)
    base = request.app[settings_key].orchestrator.public_url.rstrip("/")
    context: dict[str, Any] = {"can_read": False, "manages_tokens": False, "tokens": [],
                               "token_days": DAYS, "base_url": base}  # fmt: skip
    if me is None:
        return context
    reading = await may_read(request, room, me)
    manager = await _manager(request, room, me)
    store = ReadTokens(request.app[db_key])
    tokens = await store.list(room.slug, None if manager else owner_of(me))
    rows = [
        {"id": t.id, "owner": t.owner, "state": t.state(), "made": _day(t.created_at_ms),
         "expires": _day(t.expires_at_ms)}
        for t in tokens
    ]  # fmt: skip
    context.update(can_read=reading.allowed, manages_tokens=manager, tokens=rows)
    return context


def _day(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


async def _manager(request: web.Request, room: Room, me: Identity) -> bool:
    """The room's moderators and the organizers manage everyone's tokens."""
    if is_organizer(request.app[settings_key].orchestrator, me):
        return True
    decision = await decide(
        access_policy(room.policy), me, request.app.get(wiki_key), room=room.slug
    )
    return decision.moderator


async def _room_and_me(request: web.Request) -> tuple[Room, Identity]:
    from orchestrator.web.pages import load_room

    room = await load_room(request)
    me = await current_identity(request)
    if me is None:
        raise web.HTTPSeeOther(f"/login?next=/r/{room.slug}")
    return room, me


async def create(request: web.Request) -> web.Response:
    from orchestrator.web.pages import render_room

    room, me = await _room_and_me(request)
    reading = await may_read(request, room, me)
    if not reading.allowed:
        raise web.HTTPForbidden(text=f"You may not read this room's captions: {reading.reason}.")
    form = await request.post()
    try:
        days = int(str(form.get("days", "7")))
    except ValueError:
        days = 0
    if days not in DAYS:
        raise web.HTTPBadRequest(text=f"A read token lasts one of {DAYS} days.")
    token, row = await ReadTokens(request.app[db_key]).issue(room.slug, me, days)
    metrics.READ_TOKENS.labels(event="issued").inc()
    log.info("read token %d for room %s issued to %s (%d days)", row.id, room.slug,
             row.owner, days)  # fmt: skip
    return await render_room(request, room, new_token=token)


async def revoke(request: web.Request) -> web.Response:
    room, me = await _room_and_me(request)
    store = ReadTokens(request.app[db_key])
    try:
        row: ReadToken | None = await store.get(int(request.match_info["token_id"]))
    except ValueError:
        row = None
    if row is None or row.room != room.slug:
        raise web.HTTPNotFound(text="No such read token in this room.")
    if row.owner != owner_of(me) and not await _manager(request, room, me):
        raise web.HTTPForbidden(text="Only its owner and the room's moderators revoke a token.")
    if await store.revoke(row.id, by=owner_of(me)):
        metrics.READ_TOKENS.labels(event="revoked").inc()
        log.info("read token %d for room %s revoked by %s", row.id, room.slug, owner_of(me))
    raise web.HTTPSeeOther(f"/r/{room.slug}#reading")
