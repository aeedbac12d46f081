"""Which rooms a request sees in listings: /api/v1/rooms (and one room, its schedule),
/api/v1/schedule, /rooms, /schedule and /calendar.ics.

- The admin token or a service reader's token (``Authorization: Bearer``) and logged-in
  organizers see every room. Any other bearer token is refused (401), never ignored.
- Everyone sees the public rooms: those whose policy or caption readers hold an
  ``anyone`` rule (``public_captions``), the organizer's explicit choice.
- A logged-in person also sees the rooms whose policy or caption readers admit them
  (the same ``decide`` as joining and reading captions).

A restricted room is therefore absent from anonymous listings and from the public
iCal feed; its page ``/r/<slug>`` still tells a visitor whom to ask.

    viewer = await listing_viewer(request)      # raises a 401 problem for a bad token
    rooms = await visible(request, viewer, await repository(request).list())
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from orchestrator.access.identity import Identity
from orchestrator.access.policy import _decide
from orchestrator.app_keys import settings_key
from orchestrator.problems import bearer, match_token, problem
from orchestrator.rooms.model import Room
from orchestrator.rooms.policy import access_policy, public_captions, readers_policy
from orchestrator.web.organizers import is_organizer
from orchestrator.web.sessions import current_identity
from orchestrator.web.web_keys import wiki_key


@dataclass(frozen=True)
class Viewer:
    everything: bool  # admin or service token, or an organizer
    who: Identity | None


async def listing_viewer(request: web.Request) -> Viewer:
    settings = request.app[settings_key]
    token = bearer(request)
    if token:
        tokens = {**settings.captions.service_readers, "admin": settings.orchestrator.admin_token}
        if not match_token(token, tokens):
            raise problem(
                401,
                "this bearer token is neither the admin token nor a service reader's: "
                "send no token to list the public rooms",
                headers={"WWW-Authenticate": 'Bearer realm="plenary"'},
            )
        return Viewer(True, None)
    who = await current_identity(request)
    if who is not None and is_organizer(settings.orchestrator, who):
        return Viewer(True, who)
    return Viewer(False, who)


async def may_see(request: web.Request, viewer: Viewer, room: Room) -> bool:
    if viewer.everything or public_captions(room.policy, room.caption_readers):
        return True
    if viewer.who is None:
        return False
    wiki = request.app.get(wiki_key)
    # A listing is not an attempt to enter: the decision is not logged as one.
    if (await _decide(access_policy(room.policy), viewer.who, wiki)).allowed:
        return True
    if not room.caption_readers:
        return False
    return (await _decide(readers_policy(room.caption_readers), viewer.who, wiki)).allowed


async def visible(request: web.Request, viewer: Viewer, rooms: list[Room]) -> list[Room]:
    return [room for room in rooms if await may_see(request, viewer, room)]
