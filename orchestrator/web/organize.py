"""Organizer forms: create and edit rooms, validated by the same models as the API."""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy
from pydantic import ValidationError

from orchestrator.app_keys import settings_key
from orchestrator.rooms.api import repository
from orchestrator.rooms.model import Room, RoomCreate, RoomFields
from orchestrator.rooms.repository import RoomExists, RoomNotFound
from orchestrator.web.organizers import is_organizer
from orchestrator.web.pages import page
from orchestrator.web.sessions import current_identity

log = logging.getLogger(__name__)

FIELDS = ("slug", "title", "description", "languages", "start", "end", "timezone",
          "recurrence", "until", "policy", "caption_readers", "contact", "low_bandwidth",
          "irc_channel", "retention_days")  # fmt: skip


async def _organizer(request: web.Request) -> str:
    who = await current_identity(request)
    if who is None:
        raise web.HTTPSeeOther(f"/login?next={request.path}")
    if not is_organizer(request.app[settings_key].orchestrator, who):
        raise web.HTTPForbidden(text="Only organizers may create or edit rooms.")
    return f"{who.source}:{who.username}"


def _values_of(room: Room | None) -> dict[str, str]:
    if room is None:
        return {"timezone": "UTC", "languages": "ko", "low_bandwidth": "on",
                "policy": json.dumps({"access": [{"kind": "anyone"}], "moderators": []},
                                     indent=1), "caption_readers": "[]"}  # fmt: skip
    s = room.schedule
    return {
        "slug": room.slug, "title": room.title, "description": room.description,
        "languages": " ".join(room.languages), "start": s.start.isoformat(timespec="minutes"),
        "end": s.end.isoformat(timespec="minutes"), "timezone": s.timezone,
        "recurrence": s.recurrence or "", "until": s.until.isoformat() if s.until else "",
        "policy": json.dumps(room.policy, indent=1, ensure_ascii=False),
        "caption_readers": json.dumps(room.caption_readers, ensure_ascii=False),
        "contact": room.contact, "low_bandwidth": "on" if room.low_bandwidth else "",
        "irc_channel": room.irc_channel or "",
        "retention_days": str(room.transcript_retention_days or ""),
    }  # fmt: skip


def _parse(form: MultiDictProxy[Any]) -> tuple[dict[str, str], dict[str, Any], dict[str, str]]:
    """(raw values to show again, data for the model, errors found before the model)."""
    raw = {k: v if isinstance(v := form.get(k, ""), str) else "" for k in FIELDS}
    errors: dict[str, str] = {}
    try:
        policy = json.loads(raw["policy"] or "{}")
        if not isinstance(policy, dict):
            raise ValueError
    except ValueError:
        policy = {}
        errors["policy"] = "The access policy must be a JSON object."
    try:
        readers = json.loads(raw["caption_readers"].strip() or "[]")
        if not isinstance(readers, list):
            raise ValueError
    except ValueError:
        readers = []
        errors["caption_readers"] = (
            'Caption readers must be a JSON list of rules, e.g. [{"kind": "anyone"}], or [].'
        )
    retention: int | None = None
    if raw["retention_days"].strip():
        try:
            retention = int(raw["retention_days"])
        except ValueError:
            errors["retention_days"] = "Give a whole number of days, or leave empty."
    data = {
        "slug": raw["slug"].strip(), "title": raw["title"], "description": raw["description"],
        "languages": raw["languages"].replace(",", " ").split(),
        "schedule": {"start": raw["start"], "end": raw["end"], "timezone": raw["timezone"],
                     "recurrence": raw["recurrence"] or None, "until": raw["until"] or None},
        "policy": policy, "caption_readers": readers, "contact": raw["contact"],
        "low_bandwidth": raw["low_bandwidth"] == "on",
        "irc_channel": raw["irc_channel"].strip() or None,
        "transcript_retention_days": retention,
    }  # fmt: skip
    return raw, data, errors


FIELD_OF = {"schedule.start": "start", "schedule.end": "end", "schedule.timezone": "timezone",
            "schedule.until": "until", "schedule.recurrence": "recurrence",
            "schedule": "end", "transcript_retention_days": "retention_days"}  # fmt: skip


def _errors(exc: ValidationError) -> dict[str, str]:
    out: dict[str, str] = {}
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err["loc"]]
        where = ".".join(loc[:2]) if loc[:1] == ["schedule"] else (loc[0] if loc else "")
        field = FIELD_OF.get(where, where)
        if field not in FIELDS:
            field = "title"
        out.setdefault(field, err["msg"].removeprefix("Value error, "))
    return out


async def _form(request: web.Request, room: Room | None, values: dict[str, str],
                errors: dict[str, str], status: int = 200) -> web.Response:  # fmt: skip
    return await page(
        request, "room_form.html",
        {"room": room, "values": values, "errors": errors,
         "error_list": [(f, errors[f]) for f in FIELDS if f in errors]},
        status=status,
    )  # fmt: skip


async def new_room(request: web.Request) -> web.Response:
    await _organizer(request)
    return await _form(request, None, _values_of(None), {})


async def create_room(request: web.Request) -> web.Response:
    who = await _organizer(request)
    raw, data, errors = _parse(await request.post())
    try:
        new = RoomCreate.model_validate(data)
    except ValidationError as exc:
        errors = {**_errors(exc), **errors}
    if errors:
        return await _form(request, None, raw, errors, status=400)
    try:
        await repository(request).create(new)
    except RoomExists:
        return await _form(request, None, raw, {"slug": "A room with this name exists already."},
                           status=409)  # fmt: skip
    log.info("room %s created by %s", new.slug, who)
    raise web.HTTPSeeOther(f"/r/{new.slug}")


async def _room(request: web.Request) -> Room:
    try:
        return await repository(request).get(request.match_info["slug"])
    except RoomNotFound as exc:
        raise web.HTTPNotFound(text="No such room.") from exc


async def edit_room(request: web.Request) -> web.Response:
    await _organizer(request)
    room = await _room(request)
    return await _form(request, room, _values_of(room), {})


async def update_room(request: web.Request) -> web.Response:
    who = await _organizer(request)
    room = await _room(request)
    raw, data, errors = _parse(await request.post())
    raw["slug"] = room.slug
    data.pop("slug")
    try:
        fields = RoomFields.model_validate(data)
    except ValidationError as exc:
        errors = {**_errors(exc), **errors}
    if errors:
        return await _form(request, room, raw, errors, status=400)
    await repository(request).replace(room.slug, fields)
    log.info("room %s edited by %s", room.slug, who)
    raise web.HTTPSeeOther(f"/r/{room.slug}")
