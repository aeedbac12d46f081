"""Rendering pages for the web layer, and the read-only pages: room list, schedule,
calendar feed, room page.

Every page gets ``me`` (the logged-in Identity or None), ``csrf_token`` for its forms,
and ``viewer_tz``: the zone times are shown in (``?tz=``, remembered in the session;
otherwise each room's own).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from aiohttp import web
from aiohttp_session import get_session

from orchestrator.app_keys import settings_key
from orchestrator.irc_channels import page_data as irc_page_data
from orchestrator.render import render
from orchestrator.rooms.api import repository
from orchestrator.rooms.ical import calendar
from orchestrator.rooms.model import Room, zone
from orchestrator.rooms.policy import access_policy, public_captions
from orchestrator.rooms.repository import RoomNotFound
from orchestrator.rooms.schedule import upcoming
from orchestrator.rooms.visibility import listing_viewer, visible
from orchestrator.web.organizers import is_organizer
from orchestrator.web.sessions import csrf_token, current_identity
from orchestrator.web.web_keys import wiki_key

log = logging.getLogger(__name__)


async def page(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    session = await get_session(request)
    me = await current_identity(request)
    settings = request.app[settings_key]
    full = {
        "me": me,
        "csrf_token": csrf_token(session),
        "organizer": me is not None and is_organizer(settings.orchestrator, me),
        "ldap_enabled": settings.ldap.enabled,
        "wiki_enabled": settings.wiki.enabled,
        **context,
    }
    return render(request, template, full, status)


async def viewer_zone(request: web.Request) -> tuple[ZoneInfo | None, str | None]:
    """The zone asked for (?tz=, then the session's); an unknown name is an error text."""
    session = await get_session(request)
    asked = request.query.get("tz", "").strip()
    if asked:
        try:
            tz = zone(asked)
        except ValueError as exc:
            return None, str(exc)
        session["tz"] = asked
        return tz, None
    if "tz" in request.query:  # an empty ?tz= clears the choice
        session.pop("tz", None)
        return None, None
    kept = session.get("tz")
    if isinstance(kept, str):
        try:
            return zone(kept), None
        except ValueError:
            session.pop("tz", None)
    return None, None


def when(start: datetime, end: datetime) -> str:
    """'Tuesday 1 December 2026, 10:00 to 11:30 KST (Asia/Seoul)'."""
    name = getattr(start.tzinfo, "key", str(start.tzinfo))
    day = f"{start:%A} {start.day} {start:%B %Y}"
    if end.date() == start.date():
        span = f"{start:%H:%M} to {end:%H:%M}"
    else:
        span = f"{start:%H:%M} to {end:%A} {end.day} {end:%B}, {end:%H:%M}"
    return f"{day}, {span} {start:%Z} ({name})"


def safe_next(target: str | None, default: str = "/") -> str:
    """A local path to go back to after login; anything else (//evil, http://) is refused."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


async def index(request: web.Request) -> web.Response:
    return await page(request, "index.html", {})


async def listed_rooms(request: web.Request) -> tuple[list[Room], bool]:
    """The rooms this visitor may see (orchestrator/rooms/visibility.py), and whether
    the list is theirs alone (more than the public rooms)."""
    viewer = await listing_viewer(request)
    rooms = await visible(request, viewer, await repository(request).list())
    return rooms, viewer.everything or viewer.who is not None


async def room_list(request: web.Request) -> web.Response:
    tz, tz_error = await viewer_zone(request)
    now = datetime.now(UTC)
    rows = []
    for room in (await listed_rooms(request))[0]:
        occ = room.next_occurrence(now)
        nxt = None
        if occ is not None:
            start, end = (occ.start, occ.end) if tz is None else (
                occ.start.astimezone(tz), occ.end.astimezone(tz))  # fmt: skip
            nxt = {"text": when(start, end), "iso": start.isoformat()}
        rows.append({"room": room, "next": nxt})
    return await page(request, "rooms.html", {"rows": rows, "tz": tz, "tz_error": tz_error})


async def schedule_page(request: web.Request) -> web.Response:
    tz, tz_error = await viewer_zone(request)
    lang = request.query.get("lang", "").strip() or None
    rooms = (await listed_rooms(request))[0]
    sessions = [
        {"room": u.room, "text": when(u.start, u.end), "iso": u.start.isoformat()}
        for u in upcoming(rooms, datetime.now(UTC), lang=lang, tz=tz)
    ]
    languages = sorted({code for r in rooms for code in r.languages})
    feed = "/calendar.ics"
    query = "&".join(f"{k}={v}" for k, v in (("lang", lang), ("tz", tz and tz.key)) if v)
    return await page(
        request,
        "schedule.html",
        {
            "sessions": sessions,
            "languages": languages,
            "filter_lang": lang,
            "tz": tz,
            "tz_error": tz_error,
            "feed": f"{feed}?{query}" if query else feed,
        },
        status=400 if tz_error else 200,
    )


async def calendar_feed(request: web.Request) -> web.Response:
    tz_name = request.query.get("tz", "").strip()
    try:
        tz = zone(tz_name) if tz_name else None
    except ValueError as exc:
        return web.Response(status=400, text=str(exc))
    lang = request.query.get("lang", "").strip() or None
    settings = request.app[settings_key].orchestrator
    base = settings.public_url.rstrip("/")
    rooms, personal = await listed_rooms(request)
    sessions = upcoming(rooms, datetime.now(UTC), lang=lang, tz=tz)
    name = "Plenary sessions" + (f" ({lang})" if lang else "")
    body = calendar(sessions, base_url=base, host=urlsplit(base).hostname or "plenary",
                    name=name)  # fmt: skip
    headers = {"Content-Disposition": 'inline; filename="plenary.ics"'}
    if personal:  # restricted rooms of this visitor: for nobody else's cache
        headers["Cache-Control"] = "private, no-store"
    return web.Response(body=body, content_type="text/calendar", charset="utf-8",
                        headers=headers)  # fmt: skip


def room_facts(
    room: Room, tz: ZoneInfo | None, now: datetime, early_minutes: int
) -> dict[str, Any]:
    """What the room page and the join answers say about a room's schedule."""
    occ = room.next_occurrence(now)
    facts: dict[str, Any] = {"next": None, "open": False, "opens": None}
    if occ is None:
        return facts
    start, end = (occ.start, occ.end) if tz is None else (
        occ.start.astimezone(tz), occ.end.astimezone(tz))  # fmt: skip
    opens = start - timedelta(minutes=early_minutes)
    facts["next"] = {"text": when(start, end), "iso": start.isoformat()}
    facts["open"] = opens <= now < end
    facts["opens"] = {
        "text": f"{opens:%A} {opens.day} {opens:%B %Y}, {opens:%H:%M} {opens:%Z}",
        "iso": opens.isoformat(),
    }
    return facts


def whom_to_ask(room: Room) -> list[str]:
    """The room's contact and the moderators named one by one in its policy."""
    people = [room.contact] if room.contact else []
    for rule in access_policy(room.policy).moderators:
        if rule.kind == "user":
            people.append(f"{rule.name} ({rule.source})")
    return people


async def load_room(request: web.Request) -> Room:
    try:
        return await repository(request).get(request.match_info["slug"])
    except RoomNotFound as exc:
        raise web.HTTPNotFound(text="No such room.") from exc


async def room_page(request: web.Request) -> web.Response:
    return await render_room(request, await load_room(request))


async def render_room(request: web.Request, room: Room, new_token: str = "") -> web.Response:
    """The room page; ``new_token``: a read token just made, shown this once."""
    from orchestrator.captions import recording_notice
    from orchestrator.web.read_tokens import token_context

    tz, tz_error = await viewer_zone(request)
    early = request.app[settings_key].orchestrator.join_early_minutes
    facts = room_facts(room, tz, datetime.now(UTC), early)
    return await page(
        request,
        "room.html",
        {"room": room, "facts": facts, "tz": tz, "tz_error": tz_error,
         "ask": whom_to_ask(room), "notice": await recording_notice(request.app, room.slug),
         "public_captions": public_captions(room.policy, room.caption_readers),
         "new_token": new_token, **await token_context(request, room),
         "irc": await irc_page_data(request, room, await current_identity(request),
                                    request.app.get(wiki_key))},
    )  # fmt: skip
