"""Who may read a room's captions and transcripts: the room decides, as it does for joining.

Every caption and transcript URL of a room calls ``admit`` first. In order:

1. A bearer token (``Authorization: Bearer`` or ``?token=``): the admin token and the
   service readers' tokens (captions.service_readers, e.g. the IRC relay) read every
   room; a personal read token (access.read_tokens) reads its own room while it is
   neither revoked nor expired and its owner is still admitted by the room's current
   policy (with their LDAP groups asked again). A token that is none of these is
   refused, never ignored.
2. No room by that name (deleted, or captions kept under accept_unknown_rooms): only the
   admin and service tokens read its captions, and only the admin token the transcripts
   of a deleted room.
3. A room whose policy or caption readers hold ``anyone`` is public.
4. A logged-in person reads when the room's policy (the same ``decide`` as joining) or
   its caption readers admit them.

The room is read through a per-node cache (captions/opening.py): a change made on another
node applies here within ``opening.ROOM_TTL_S`` seconds, one made on this node at once.
Read tokens and login sessions are read every time.

Refusals: a browser is sent to log in (302, back here afterwards) or shown why and whom
to ask (403, as on the join page); a program gets a problem document (401/403/404).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

from aiohttp import web

from orchestrator import metrics
from orchestrator.access.errors import IdentitySourceUnavailable
from orchestrator.access.identity import Identity
from orchestrator.access.policy import Decision, decide
from orchestrator.access.read_tokens import ReadTokens, owner_of
from orchestrator.app_keys import db_key, settings_key
from orchestrator.captions.opening import opening_for
from orchestrator.problems import bearer, match_token, problem
from orchestrator.rooms.model import Room
from orchestrator.rooms.policy import access_policy, public_captions, readers_policy
from orchestrator.rooms.repository import RoomNotFound, RoomRepository
from orchestrator.web.sessions import current_identity
from orchestrator.web.web_keys import directory_key, wiki_key

log = logging.getLogger(__name__)

Kind = Literal["public", "member", "token", "service", "admin"]


@dataclass(frozen=True)
class Reader:
    kind: Kind
    name: str  # "" for the public; the service's, the owner's or the person's name


def wants_html(request: web.Request) -> bool:
    return "text/html" in request.headers.get("Accept", "")


def given_token(request: web.Request) -> str:
    return bearer(request) or request.query.get("token", "").strip()


async def room_or_none(request: web.Request, slug: str) -> Room | None:
    try:
        return await RoomRepository(request.app[db_key]).get(slug)
    except RoomNotFound:
        return None


async def may_read(request: web.Request, room: Room, who: Identity) -> Decision:
    """The room's decision for ``who``: its policy first, then its caption readers."""
    wiki = request.app.get(wiki_key)
    decision = await decide(access_policy(room.policy), who, wiki, room=room.slug)
    if decision.allowed or not room.caption_readers:
        return decision
    more = await decide(readers_policy(room.caption_readers), who, wiki, room=room.slug)
    if more.allowed:
        return more
    return decision


async def admit(request: web.Request, slug: str, *, transcript: bool = False) -> Reader:
    """Let the request read room ``slug`` or raise the refusal (see the module text).

    ``transcript``: the room is that of a transcript (a /pid/ page), which outlives
    its room; a deleted room's transcripts are for administrators only."""
    settings = request.app[settings_key]
    token = given_token(request)
    # At most opening.ROOM_TTL_S old (changes on this node drop it at once): the bound
    # on how long another node's change to the room takes to apply here.
    room = await opening_for(request.app[db_key]).room(slug)
    if token:
        services = dict(settings.captions.service_readers)
        services["admin"] = settings.orchestrator.admin_token
        name = match_token(token, services)
        if name == "admin":
            return Reader("admin", "admin")
        if name and not (transcript and room is None):
            return Reader("service", name)
        if name:  # a deleted room's transcript: the administrators' alone
            raise await _refuse(request, 403, _deleted(slug))
        return await _read_token(request, token, slug, room)
    if room is None:
        if transcript:
            raise await _refuse(request, 403, _deleted(slug))
        raise await _refuse(request, 404, f"no room named {slug!r}")
    if public_captions(room.policy, room.caption_readers):
        return Reader("public", "")
    who = await current_identity(request)
    if who is None:
        if wants_html(request):
            target = request.path_qs
            raise web.HTTPFound(f"/login?next={quote(target, safe='/')}")
        raise problem(
            401,
            f"the captions of room {slug!r} are for its attendees: log in, or send a read "
            "token from the room page as 'Authorization: Bearer <token>' or ?token=",
            headers={"WWW-Authenticate": 'Bearer realm="plenary"'},
        )
    decision = await may_read(request, room, who)
    if not decision.allowed:
        raise await _denied(request, room, decision)
    return Reader("member", owner_of(who))


async def _owner_now(request: web.Request, owner: Identity) -> Identity:
    """The token's owner with their LDAP groups as the directory says now (a member
    removed from the room's group loses their tokens too); the wiki's as at issue."""
    lookup = getattr(request.app.get(directory_key), "groups_of", None)
    if owner.source != "ldap" or lookup is None:
        return owner
    try:
        groups: frozenset[str] = await lookup(owner.username)
    except IdentitySourceUnavailable as exc:
        raise await _refuse(request, 503, f"the directory cannot be asked: {exc}") from None
    return dataclasses.replace(owner, groups=groups)


def _deleted(slug: str) -> str:
    return (
        f"the room {slug!r} of this transcript has been deleted; only the administrators "
        "(admin token) read it now"
    )


async def _read_token(request: web.Request, token: str, slug: str, room: Room | None) -> Reader:
    found = await ReadTokens(request.app[db_key]).check(token)
    if found is None:
        raise await _refuse(request, 401, "this read token is not valid")
    state = found.state()
    if state != "active":
        raise await _refuse(
            request, 401, f"this read token has {'been revoked' if state == 'revoked' else state}"
            "; make a new one on the room page",
        )  # fmt: skip
    if found.room != slug:
        raise await _refuse(request, 403, f"this read token is for room {found.room!r} only")
    if room is None:
        raise await _refuse(request, 403, f"the room {slug!r} has been deleted")
    if not public_captions(room.policy, room.caption_readers):
        decision = await may_read(request, room, await _owner_now(request, found.identity))
        if not decision.allowed:
            raise await _refuse(
                request, 403,
                f"the owner of this read token may no longer read room {slug!r}: "
                f"{decision.reason}",
            )  # fmt: skip
    metrics.READ_TOKENS.labels(event="used").inc()
    return Reader("token", found.owner)


async def _refuse(request: web.Request, status: int, detail: str) -> web.HTTPException:
    log.info("caption read refused (%d): %s %s: %s", status, request.method, request.path, detail)
    if wants_html(request):
        from orchestrator.web.pages import page

        heading = {401: "Not logged in", 403: "Not allowed", 404: "Not found",
                   503: "Cannot check right now"}[status]  # fmt: skip
        response = await page(
            request, "error.html", {"heading": heading, "message": detail}, status=status
        )
        return _as_exception(response)
    return problem(status, detail)


async def _denied(request: web.Request, room: Room, decision: Decision) -> web.HTTPException:
    status = 503 if decision.outcome == "unavailable" else 403
    if not wants_html(request):
        return problem(
            status,
            f"you may not read the captions of room {room.slug!r}: {decision.reason}",
            ask=_ask(room),
        )
    from orchestrator.web.pages import page, whom_to_ask

    response = await page(
        request,
        "denied.html",
        {"room": room, "decision": decision, "ask": whom_to_ask(room), "reading": True},
        status=status,
    )
    return _as_exception(response)


def _ask(room: Room) -> list[str]:
    from orchestrator.web.pages import whom_to_ask

    return whom_to_ask(room)


def _as_exception(response: web.Response) -> web.HTTPException:
    """A rendered page raised as the HTTP error of its status."""
    classes: dict[int, type[web.HTTPException]] = {
        401: web.HTTPUnauthorized,
        403: web.HTTPForbidden,
        404: web.HTTPNotFound,
        503: web.HTTPServiceUnavailable,
    }
    return classes[response.status](
        text=response.text, content_type="text/html", headers={"Vary": "Accept"}
    )
