"""The JSON REST API under /api/v1: rooms CRUD and schedules.

Reads show the rooms the caller may see (orchestrator/rooms/visibility.py: public
rooms to everyone, more to attendees, all to organizers and the admin token); writes need
``Authorization: Bearer <orchestrator.admin_token>``. Errors are problem documents
(orchestrator/problems.py: type, title, status, detail; ``errors`` per field when the
room is not valid) with 400, 401, 403, 404 or 409.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from orchestrator.app_keys import db_key, settings_key
from orchestrator.problems import check_bearer, problem_response
from orchestrator.rooms.model import Room, RoomCreate, RoomFields, RoomPatch, SessionOut, zone
from orchestrator.rooms.openapi import document
from orchestrator.rooms.repository import RoomExists, RoomNotFound, RoomRepository
from orchestrator.rooms.schedule import upcoming
from orchestrator.rooms.visibility import listing_viewer, may_see, visible

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def repository(request: web.Request) -> RoomRepository:
    return RoomRepository(request.app[db_key])


def problem(status: int, error: str, detail: list[dict[str, Any]] | None = None) -> web.Response:
    """A problem document; ``detail`` (per-field errors) becomes its ``errors``."""
    return problem_response(status, error, **({"errors": detail} if detail else {}))


def admin_only(handler: Handler) -> Handler:
    async def checked(request: web.Request) -> web.StreamResponse:
        token = request.app[settings_key].orchestrator.admin_token
        check_bearer(request, {"admin": token}, "changing rooms over the API",
                     "orchestrator.admin_token")  # fmt: skip
        return await handler(request)

    return checked


async def _body(request: web.Request, model: type[M]) -> M:
    try:
        data = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Problem(problem(400, "the request body is not JSON")) from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _Problem(validation_problem(exc)) from exc


def validation_problem(exc: ValidationError) -> web.Response:
    detail = [
        {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
        for err in exc.errors(include_url=False, include_context=False, include_input=False)
    ]
    return problem(400, "the room is not valid", detail)


class _Problem(Exception):
    def __init__(self, response: web.Response) -> None:
        self.response = response


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        text=model.model_dump_json(), status=status, content_type="application/json"
    )


def _slug(request: web.Request) -> str:
    return request.match_info["slug"]


async def list_rooms(request: web.Request) -> web.Response:
    """The rooms this caller may see (orchestrator/rooms/visibility.py)."""
    viewer = await listing_viewer(request)
    rooms = await visible(request, viewer, await repository(request).list())
    return web.json_response([json.loads(r.model_dump_json()) for r in rooms])


async def _visible_room(request: web.Request) -> Room:
    """The room of the URL if this caller may see it; 404 alike for the rest."""
    viewer = await listing_viewer(request)
    try:
        room = await repository(request).get(_slug(request))
    except RoomNotFound:
        room = None
    if room is None or not await may_see(request, viewer, room):
        raise _Problem(problem(404, f"no room named {_slug(request)!r}"))
    return room


async def get_room(request: web.Request) -> web.Response:
    try:
        return _json(await _visible_room(request))
    except _Problem as p:
        return p.response


@admin_only
async def create_room(request: web.Request) -> web.Response:
    try:
        new = await _body(request, RoomCreate)
        room = await repository(request).create(new)
    except _Problem as p:
        return p.response
    except RoomExists:
        return problem(409, "a room with that name exists already")
    response = _json(room, 201)
    response.headers["Location"] = f"/api/v1/rooms/{room.slug}"
    return response


@admin_only
async def replace_room(request: web.Request) -> web.Response:
    try:
        fields = await _body(request, RoomFields)
        return _json(await repository(request).replace(_slug(request), fields))
    except _Problem as p:
        return p.response
    except RoomNotFound:
        return problem(404, f"no room named {_slug(request)!r}")


@admin_only
async def patch_room(request: web.Request) -> web.Response:
    repo = repository(request)
    try:
        patch = await _body(request, RoomPatch)
        current = await repo.get(_slug(request))
        merged = current.model_dump(include=set(RoomFields.model_fields))
        merged.update(patch.model_dump(exclude_unset=True))
        fields = RoomFields.model_validate(merged)
        return _json(await repo.replace(current.slug, fields))
    except _Problem as p:
        return p.response
    except ValidationError as exc:
        return validation_problem(exc)
    except RoomNotFound:
        return problem(404, f"no room named {_slug(request)!r}")


@admin_only
async def delete_room(request: web.Request) -> web.Response:
    try:
        await repository(request).delete(_slug(request))
    except RoomNotFound:
        return problem(404, f"no room named {_slug(request)!r}")
    return web.Response(status=204)


async def room_schedule(request: web.Request) -> web.Response:
    try:
        room = await _visible_room(request)
    except _Problem as p:
        return p.response
    return await _schedule(request, [room])


async def schedule(request: web.Request) -> web.Response:
    viewer = await listing_viewer(request)
    return await _schedule(
        request, await visible(request, viewer, await repository(request).list())
    )


async def _schedule(request: web.Request, rooms: list[Any]) -> web.Response:
    tz_name = request.query.get("tz") or None
    try:
        tz = zone(tz_name) if tz_name else None
    except ValueError as exc:
        return problem(400, str(exc))
    lang = request.query.get("lang") or None
    base = request.app[settings_key].orchestrator.public_url.rstrip("/")
    sessions = [
        SessionOut(
            slug=u.room.slug,
            title=u.room.title,
            languages=u.room.languages,
            start=u.start,
            end=u.end,
            url=f"{base}/r/{u.room.slug}",
        )
        for u in upcoming(rooms, datetime.now(UTC), lang=lang, tz=tz)
    ]
    return web.json_response([json.loads(s.model_dump_json()) for s in sessions])


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(document(request.app[settings_key].orchestrator.public_url))


def api_routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/openapi.json", openapi),
        web.get("/api/v1/rooms", list_rooms),
        web.post("/api/v1/rooms", create_room),
        web.get("/api/v1/rooms/{slug}", get_room),
        web.put("/api/v1/rooms/{slug}", replace_room),
        web.patch("/api/v1/rooms/{slug}", patch_room),
        web.delete("/api/v1/rooms/{slug}", delete_room),
        web.get("/api/v1/rooms/{slug}/schedule", room_schedule),
        web.get("/api/v1/schedule", schedule),
    ]
