"""What IRC relays ask the orchestrator so each channel is served by exactly one of them.

The relay (bots/irc) has no database; it asks here, as a service reader (bearer: one of
``captions.service_readers``, like ``GET /api/v1/irc/channels``):

- ``POST /api/v1/irc/leases/{channel}`` ``{"holder": "host:pid:…", "ttl": 15}``: take
  or renew the channel's lease (orchestrator/leases.py). 200 ``{"held": true, …}`` while
  it is the caller's, 409 (a problem document with ``"held": false, "holder": …,
  "expires_in_ms": …``) while another relay holds it. ``ttl`` (seconds) defaults to
  ``orchestrator.lease_seconds``.
  A relay posts to a channel only while it holds the channel's lease, renews it every
  third of the lease time and stops (and parts) when it cannot.
- ``DELETE /api/v1/irc/leases/{channel}?holder=…``: give it up (a relay stopping).
- ``GET /api/v1/irc/positions/{room}``: the room's delivered position, the last caption
  position the relay confirmed reached the channel (0: none yet); a relay taking a
  channel over resumes after it.
- ``PUT /api/v1/irc/positions/{room}`` ``{"position": n}``: raise it. Monotonic: a lower
  position never overwrites a higher one (the answer is the stored one).
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from sqlalchemy import select

from orchestrator.app_keys import db_key, settings_key
from orchestrator.db import Database, upsert
from orchestrator.leases import Leases
from orchestrator.problems import check_bearer, problem, problem_response
from orchestrator.schema import irc_relay_positions

MIN_TTL, MAX_TTL = 1.0, 300.0
MAX_NAME = 200


def lease_name(channel: str) -> str:
    """The lease of an IRC channel: channel names compare case-insensitively."""
    return "irc-channel:" + channel.lower()


class RelayPositions:
    """Each room's delivered position (table ``irc_relay_positions``), only ever raised."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, room: str) -> int:
        query = select(irc_relay_positions.c.position).where(irc_relay_positions.c.room == room)
        async with self.db.read() as conn:
            return int(await conn.scalar(query) or 0)

    async def raise_to(self, room: str, position: int) -> int:
        """Store ``position`` unless a higher one is stored; the stored one after."""
        t = irc_relay_positions
        stmt = upsert(self.db, t).values(
            room=room, position=position, updated_at_ms=int(time.time() * 1000)
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.room],
            set_={"position": stmt.excluded.position, "updated_at_ms": stmt.excluded.updated_at_ms},
            where=t.c.position < stmt.excluded.position,
        )
        async with self.db.write() as conn:
            await conn.execute(stmt)
            return int(await conn.scalar(select(t.c.position).where(t.c.room == room)) or 0)


def _reader(request: web.Request) -> str:
    readers = request.app[settings_key].captions.service_readers
    return check_bearer(request, readers, "IRC relay coordination", "captions.service_readers")


def _name(request: web.Request, key: str) -> str:
    value = request.match_info[key]
    if not value or len(value) > MAX_NAME:
        raise problem(400, f"{key} must be 1 to {MAX_NAME} characters")
    return value


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise problem(400, "the body must be JSON") from None
    if not isinstance(body, dict):
        raise problem(400, "the body must be a JSON object")
    return body


async def take_lease(request: web.Request) -> web.Response:
    _reader(request)
    channel = _name(request, "channel")
    body = await _json(request)
    holder = body.get("holder")
    ttl = body.get("ttl", request.app[settings_key].orchestrator.lease_seconds)
    if not isinstance(holder, str) or not 0 < len(holder) <= MAX_NAME:
        raise problem(400, 'send {"holder": "who asks", "ttl": seconds}')
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not MIN_TTL <= ttl <= MAX_TTL:
        raise problem(400, f"ttl must be seconds from {MIN_TTL:g} to {MAX_TTL:g}")
    ttl_ms = int(ttl * 1000)
    got = await Leases(request.app[db_key]).acquire(lease_name(channel), holder, ttl_ms)
    answer = {
        "channel": channel,
        "held": got.held,
        "holder": got.holder,
        "ttl_ms": ttl_ms,
        "expires_in_ms": max(0, got.expires_at_ms - got.now_ms),
    }
    if got.held:
        return web.json_response(answer)
    detail = f"{got.holder} holds the relay lease of {channel}"
    return problem_response(409, detail, **answer)  # a problem document with the claim


async def drop_lease(request: web.Request) -> web.Response:
    _reader(request)
    channel = _name(request, "channel")
    holder = request.query.get("holder", "")
    if not holder:
        raise problem(400, "say whose lease: ?holder=…")
    released = await Leases(request.app[db_key]).release(lease_name(channel), holder)
    return web.json_response({"channel": channel, "released": released})


async def get_position(request: web.Request) -> web.Response:
    _reader(request)
    room = _name(request, "room")
    position = await RelayPositions(request.app[db_key]).get(room)
    return web.json_response({"room": room, "position": position})


async def put_position(request: web.Request) -> web.Response:
    _reader(request)
    room = _name(request, "room")
    position = (await _json(request)).get("position")
    if isinstance(position, bool) or not isinstance(position, int) or position < 0:
        raise problem(400, 'send {"position": n}, n ≥ 0')
    stored = await RelayPositions(request.app[db_key]).raise_to(room, position)
    return web.json_response({"room": room, "position": stored})


def routes() -> list[web.AbstractRouteDef]:
    return [
        web.post("/api/v1/irc/leases/{channel}", take_lease),
        web.delete("/api/v1/irc/leases/{channel}", drop_lease),
        web.get("/api/v1/irc/positions/{room}", get_position),
        web.put("/api/v1/irc/positions/{room}", put_position),
    ]


def openapi_paths() -> dict[str, Any]:
    """This module's paths for the OpenAPI document (orchestrator/rooms/openapi.py)."""
    problem_ = {"application/problem+json": {"schema": {"type": "object"}}}
    errors = {str(c): {"description": d, "content": problem_} for c, d in (
        (400, "Not such a body or name"), (401, "No bearer token"),
        (403, "Not a valid token, or not enabled"))}  # fmt: skip
    string, integer = {"type": "string"}, {"type": "integer"}
    claim = {
        "type": "object",
        "required": ["channel", "held", "holder", "ttl_ms", "expires_in_ms"],
        "properties": {
            "channel": string,
            "held": {"type": "boolean", "description": "Whether the caller holds it now"},
            "holder": {"type": "string", "description": "Who holds it"},
            "ttl_ms": integer,
            "expires_in_ms": {"type": "integer", "description": "Until it runs out"},
        },
    }
    ask = {
        "type": "object",
        "required": ["holder"],
        "properties": {
            "holder": {"type": "string", "description": "The relay's id, unique per run"},
            "ttl": {"type": "number", "minimum": MIN_TTL, "maximum": MAX_TTL,
                    "description": "Seconds; default orchestrator.lease_seconds"},
        },
    }  # fmt: skip
    released = {"type": "object", "properties": {"channel": string,
                                                 "released": {"type": "boolean"}}}  # fmt: skip
    position = {"type": "object", "required": ["room", "position"],
                "properties": {"room": string, "position": integer}}  # fmt: skip
    put = {"type": "object", "required": ["position"],
           "properties": {"position": {"type": "integer", "minimum": 0}}}  # fmt: skip

    def param(name: str, where: str = "path") -> dict[str, Any]:
        return {"name": name, "in": where, "required": True, "schema": string}

    def body(schema: dict[str, Any], text: str) -> dict[str, Any]:
        return {"description": text, "content": {"application/json": {"schema": schema}}}

    reader: list[dict[str, list[str]]] = [{"service_reader": []}]
    return {
        "/api/v1/irc/leases/{channel}": {
            "post": {
                "summary": "Take or renew an IRC channel's relay lease",
                "security": reader, "parameters": [param("channel")],
                "requestBody": {"required": True, **body(ask, "Who asks, for how long")},
                "responses": {"200": body(claim, "The caller holds it"),
                              **errors, "409": {
                                  "description": "Another relay holds it",
                                  "content": {"application/problem+json": {"schema": claim}}}}},
            "delete": {
                "summary": "Give an IRC channel's relay lease up",
                "security": reader, "parameters": [param("channel"), param("holder", "query")],
                "responses": {"200": body(released, "Whether it was the holder's"),
                              **errors}}},
        "/api/v1/irc/positions/{room}": {
            "get": {
                "summary": "The room's delivered IRC position (0: none)",
                "security": reader, "parameters": [param("room")],
                "responses": {"200": body(position, "The position"), **errors}},
            "put": {
                "summary": "Raise the room's delivered IRC position (never lowers it)",
                "security": reader, "parameters": [param("room")],
                "requestBody": {"required": True, **body(put, "The delivered position")},
                "responses": {"200": body(position, "The stored position"), **errors}}},
    }  # fmt: skip
