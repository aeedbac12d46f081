"""IRC channels of restricted rooms: one random key per room, the relay's report.

A room is restricted when neither its policy nor its caption readers hold an
``anyone`` rule. The orchestrator is the one source of truth for its channel key:

- ``GET /api/v1/irc/channels`` (bearer: one of ``captions.service_readers``) lists
  every room with its channel, whether it is restricted and, if so, its key; the
  relay sets that key (+k) on the channel and joins with it after a restart. Each row
  also has the room's title, the time zone of its schedule and the link to its
  transcripts page (``transcript_link``), which the relay's ``!transcript`` answers.
- ``PUT /api/v1/irc/channels/{room}/state`` (same bearer) is where the relay says
  whether it could protect the channel, and why not (not a channel operator, the
  server lacks the mode, the channel has someone else's key).
- ``POST /api/v1/irc/channels/{room}/key`` (admin token) makes a new key; the relay
  picks it up at its next refresh and sets it.

Relays coordinate here too (orchestrator/irc_relay_api.py, routes added below): each
channel's lease and each room's delivered position.

An ``irc.rooms[].key`` set by the admin wins over the generated key, here and in the
relay. The room page shows the key only to attendees the room admits (``page_data``).
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aiohttp import web
from sqlalchemy import select, update

from orchestrator import irc_relay_api
from orchestrator.access.identity import Identity
from orchestrator.access.policy import decide
from orchestrator.app_keys import db_key, settings_key
from orchestrator.db import Database, upsert
from orchestrator.problems import check_bearer, problem
from orchestrator.rooms.model import Room
from orchestrator.rooms.policy import access_policy, readers_policy
from orchestrator.rooms.repository import RoomNotFound, RoomRepository
from orchestrator.schema import irc_channel_keys
from plenary.settings import Settings

log = logging.getLogger(__name__)

KEY_LENGTH = 16  # ngircd and InspIRCd both take keys of 23+ characters


@dataclass(frozen=True, slots=True)
class ChannelState:
    key: str
    protected: bool | None  # None: the relay has not reported yet
    detail: str
    reported_at_ms: int | None


def restricted(room: Room) -> bool:
    """Whether the room's captions are for some people only (no ``anyone`` rule)."""
    rules = list(room.policy.get("access", [])) + list(getattr(room, "caption_readers", []))
    return not any(isinstance(rule, dict) and rule.get("kind") == "anyone" for rule in rules)


def new_key() -> str:
    # Letters and digits only: no space, comma or colon that IRC would split on.
    alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(secrets.choice(alphabet) for _ in range(KEY_LENGTH))


def configured(settings: Settings, room: Room) -> tuple[str, str]:
    """(channel, admin key) of the room: irc.rooms wins over the room's irc_channel."""
    for entry in settings.irc.rooms:
        if entry.room == room.slug:
            return entry.channel, entry.key
    return room.irc_channel or "", ""


def transcript_link(settings: Settings, room: Room) -> str:
    """The room's transcripts page (``/r/{room}/transcripts``, served by
    orchestrator/captions/routes.py) under ``orchestrator.public_url``, unless
    ``irc.rooms[].transcript_url`` or ``irc.transcript_url`` names another place."""
    for entry in settings.irc.rooms:
        if entry.room == room.slug and entry.transcript_url:
            return entry.transcript_url
    base = settings.orchestrator.public_url.rstrip("/")
    template = settings.irc.transcript_url or base + "/r/{room}/transcripts"
    return template.replace("{room}", quote(room.slug, safe=""))


class ChannelKeys:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def state(self, room: str) -> ChannelState | None:
        c = irc_channel_keys.c
        query = select(c.channel_key, c.protected, c.detail, c.reported_at_ms)
        async with self.db.read() as conn:
            row = (await conn.execute(query.where(c.room == room))).first()
        if row is None:
            return None
        protected = None if row.protected is None else bool(row.protected)
        return ChannelState(row.channel_key, protected, row.detail, row.reported_at_ms)

    async def key(self, room: str) -> str:
        """The room's key, made on first use (insert-if-absent, then read: two nodes
        asking at once both get the one key that was stored)."""
        made = {"room": room, "channel_key": new_key(), "created_at_ms": _now_ms()}
        query = select(irc_channel_keys.c.channel_key).where(irc_channel_keys.c.room == room)
        async with self.db.write() as conn:
            await conn.execute(
                upsert(self.db, irc_channel_keys).values(made).on_conflict_do_nothing()
            )
            return str(await conn.scalar(query))

    async def rotate(self, room: str) -> str:
        key = new_key()
        stmt = upsert(self.db, irc_channel_keys).values(
            room=room, channel_key=key, created_at_ms=_now_ms()
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[irc_channel_keys.c.room],
            set_={"channel_key": stmt.excluded.channel_key,
                  "created_at_ms": stmt.excluded.created_at_ms,
                  "protected": None, "detail": "", "reported_at_ms": None},
        )  # fmt: skip
        async with self.db.write() as conn:
            await conn.execute(stmt)
        log.info("irc: new channel key for room %s", room)
        return key

    async def report(self, room: str, protected: bool, detail: str) -> None:
        await self.key(room)  # a public room's channel can be reported too
        async with self.db.write() as conn:
            await conn.execute(
                update(irc_channel_keys)
                .where(irc_channel_keys.c.room == room)
                .values(protected=int(protected), detail=detail[:500], reported_at_ms=_now_ms())
            )


def _now_ms() -> int:
    return int(time.time() * 1000)


def _keys(request: web.Request) -> ChannelKeys:
    return ChannelKeys(request.app[db_key])


def _reader(request: web.Request) -> str:
    readers = request.app[settings_key].captions.service_readers
    return check_bearer(request, readers, "reading IRC channel keys", "captions.service_readers")


async def list_channels(request: web.Request) -> web.Response:
    """Every room's channel, whether it is restricted, its key if so, and what the
    relay's ``!transcript`` says of it (title, time zone, transcript link)."""
    _reader(request)
    settings = request.app[settings_key]
    keys = _keys(request)
    out: list[dict[str, Any]] = []
    for room in await RoomRepository(request.app[db_key]).list():
        channel, admin_key = configured(settings, room)
        closed = restricted(room)
        key = (admin_key or await keys.key(room.slug)) if closed else admin_key
        out.append({"room": room.slug, "channel": channel, "restricted": closed, "key": key,
                    "title": room.title, "timezone": room.schedule.timezone,
                    "transcript_url": transcript_link(settings, room)})  # fmt: skip
    return web.json_response({"channels": out})


async def put_state(request: web.Request) -> web.Response:
    """The relay's report: ``{"protected": bool, "detail": "why not"}``."""
    name = _reader(request)
    slug = request.match_info["room"]
    try:
        await RoomRepository(request.app[db_key]).get(slug)
    except RoomNotFound:
        raise problem(404, f"no room named {slug!r}") from None
    try:
        body = await request.json()
    except ValueError:
        raise problem(400, "the body must be JSON") from None
    protected = body.get("protected") if isinstance(body, dict) else None
    detail = body.get("detail", "") if isinstance(body, dict) else None
    if not isinstance(protected, bool) or not isinstance(detail, str):
        raise problem(400, 'send {"protected": true|false, "detail": "…"}')
    await _keys(request).report(slug, protected, detail)
    level = logging.INFO if protected else logging.WARNING
    said = "protected" if protected else f"NOT protected: {detail}"
    log.log(level, "irc: %s reports the channel of %s %s", name, slug, said)
    return web.Response(status=204)


async def rotate_key(request: web.Request) -> web.Response:
    """A new key for a room (admin token); the relay sets it at its next refresh."""
    admin = request.app[settings_key].orchestrator.admin_token
    check_bearer(request, {"admin": admin}, "changing IRC channel keys", "orchestrator.admin_token")
    slug = request.match_info["room"]
    try:
        await RoomRepository(request.app[db_key]).get(slug)
    except RoomNotFound:
        raise problem(404, f"no room named {slug!r}") from None
    return web.json_response({"room": slug, "key": await _keys(request).rotate(slug)})


def routes() -> list[web.AbstractRouteDef]:
    return [
        web.get("/api/v1/irc/channels", list_channels),
        web.put("/api/v1/irc/channels/{room}/state", put_state),
        web.post("/api/v1/irc/channels/{room}/key", rotate_key),
        *irc_relay_api.routes(),  # leases and delivered positions
    ]


async def page_data(
    request: web.Request, room: Room, who: Identity | None, wiki: Any = None
) -> dict[str, Any]:
    """What the room page says about the room's IRC channel (templates/_irc.html).

    ``key`` is set only for an attendee the room's policy (or its caption readers)
    admits; ``state`` is the relay's last report: protected, not protected (``detail``
    says why) or not reported yet.
    """
    settings = request.app[settings_key]
    channel, admin_key = configured(settings, room)
    if not channel:
        return {"channel": ""}
    closed = restricted(room)
    data: dict[str, Any] = {"channel": channel, "restricted": closed, "key": "",
                            "admitted": False, "state": None}  # fmt: skip
    keys = ChannelKeys(request.app[db_key])
    state = await keys.state(room.slug)
    data["state"] = state
    if not closed or who is None:
        return data
    admitted = (await decide(access_policy(room.policy), who, wiki, room=room.slug)).allowed
    readers = getattr(room, "caption_readers", [])
    if not admitted and readers:
        admitted = (await decide(readers_policy(readers), who, wiki, room=room.slug)).allowed
    data["admitted"] = admitted
    if admitted:
        data["key"] = admin_key or await keys.key(room.slug)
    return data


EMBEDDED_RELAY = "embedded-irc-relay"  # the service reader name of plenary serve's relay


def with_relay_reader(settings: Settings) -> Settings:
    """Settings where the in-process relay has a service reader token (made up here,
    living as long as the process) unless irc.orchestrator_token is set already."""
    if not settings.irc.rooms or settings.irc.orchestrator_token:
        return settings
    token = secrets.token_urlsafe(32)
    readers = {**settings.captions.service_readers, EMBEDDED_RELAY: token}
    return settings.model_copy(
        update={
            "irc": settings.irc.model_copy(update={"orchestrator_token": token}),
            "captions": settings.captions.model_copy(update={"service_readers": readers}),
        }
    )


def openapi_paths() -> dict[str, Any]:
    """This module's paths for the OpenAPI document (orchestrator/rooms/openapi.py)."""
    problem = {"application/problem+json": {"schema": {"type": "object"}}}
    errors = {str(c): {"description": d, "content": problem} for c, d in (
        (401, "No bearer token"), (403, "Not a valid token, or not enabled"),
        (404, "No room by that name"))}  # fmt: skip
    row = {
        "type": "object",
        "required": ["room", "channel", "restricted", "key", "title", "timezone", "transcript_url"],
        "properties": {
            "room": {"type": "string"},
            "channel": {"type": "string", "description": "'' when the room has none"},
            "restricted": {"type": "boolean"},
            "key": {"type": "string", "description": "'' for a public room's channel"},
            "title": {"type": "string", "description": "The room's title"},
            "timezone": {"type": "string", "description": "IANA zone of its schedule"},
            "transcript_url": {"type": "string", "description": "Its transcripts page"},
        },
    }
    table = {"type": "object", "properties": {"channels": {"type": "array", "items": row}}}
    state = {
        "type": "object",
        "required": ["protected"],
        "properties": {"protected": {"type": "boolean"}, "detail": {"type": "string"}},
    }
    key = {"type": "object", "properties": {"room": {"type": "string"},
                                            "key": {"type": "string"}}}  # fmt: skip
    room = [{"name": "room", "in": "path", "required": True, "schema": {"type": "string"}}]

    def body(schema: dict[str, Any], text: str) -> dict[str, Any]:
        return {"description": text, "content": {"application/json": {"schema": schema}}}

    reader: list[dict[str, list[str]]] = [{"service_reader": []}]
    return {
        "/api/v1/irc/channels": {"get": {
            "summary": "Every room's IRC channel, restricted or not, and its key",
            "security": reader, "responses": {"200": body(table, "The table"), **errors}}},
        "/api/v1/irc/channels/{room}/state": {"put": {
            "summary": "The relay says whether it could protect the room's channel",
            "security": reader, "parameters": room,
            "requestBody": {"required": True, **body(state, "What the relay saw")},
            "responses": {"204": {"description": "Recorded"}, **errors,
                          "400": body({"type": "object"}, "Not such a body")}}},
        "/api/v1/irc/channels/{room}/key": {"post": {
            "summary": "Make a new channel key (admin token)",
            "security": [{"admin": []}], "parameters": room,
            "responses": {"200": body(key, "The new key"), **errors}}},
        **irc_relay_api.openapi_paths(),
    }  # fmt: skip
