"""The OpenAPI 3.1 document of /api/v1, its schemas generated from the pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from orchestrator.captions.openapi import openapi_paths as caption_paths
from orchestrator.captions.openapi import security_schemes as caption_schemes
from orchestrator.irc_channels import openapi_paths as irc_paths
from orchestrator.rooms.model import Problem, Room, RoomCreate, RoomFields, RoomPatch, SessionOut

REF = "#/components/schemas/{model}"


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(
    schema: dict[str, Any], description: str, media: str = "application/json"
) -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Invalid JSON, fields or query",
        401: "No admin bearer token",
        403: "Not the admin token, or API writes disabled (no orchestrator.admin_token)",
        404: "No room by that name",
        409: "A room by that name exists already",
    }
    return {str(c): _json(_ref(Problem), text[c], "application/problem+json") for c in codes}


SLUG = {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}}
FILTERS = [
    {"name": "lang", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "Only rooms captioned in this language (ko also matches ko-KR)."},
    {"name": "tz", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "IANA time zone for the times (default: each room's own)."},
]  # fmt: skip
WRITE: dict[str, Any] = {"security": [{"admin": []}]}


def document(server: str) -> dict[str, Any]:
    _, defs = models_json_schema(
        [
            (m, "serialization" if m in (Room, SessionOut, Problem) else "validation")
            for m in (Room, RoomCreate, RoomFields, RoomPatch, SessionOut, Problem)
        ],
        ref_template=REF,
    )
    sessions = _json({"type": "array", "items": _ref(SessionOut)}, "Upcoming sessions")
    room = _json(_ref(Room), "The room")
    return {
        "openapi": "3.1.0",
        "info": {"title": "Plenary API", "version": "1"},
        "servers": [{"url": server.rstrip("/")}],
        "components": {
            "schemas": defs["$defs"],
            "securitySchemes": {
                "admin": {"type": "http", "scheme": "bearer"},
                "service_reader": {"type": "http", "scheme": "bearer"},  # service_readers
                **caption_schemes(),
            },
        },
        "paths": {
            "/api/v1/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
                }
            },
            "/api/v1/rooms": {
                "get": {
                    "summary": "Every room",
                    "responses": {
                        "200": _json({"type": "array", "items": _ref(Room)}, "Rooms by name")
                    },
                },
                "post": {
                    "summary": "Create a room",
                    **WRITE,
                    "requestBody": {"required": True, **_json(_ref(RoomCreate), "New room")},
                    "responses": {"201": room, **_errors(400, 401, 403, 409)},
                },
            },
            "/api/v1/rooms/{slug}": {
                "parameters": [SLUG],
                "get": {"summary": "One room", "responses": {"200": room, **_errors(404)}},
                "put": {
                    "summary": "Replace a room (all fields but its name)",
                    **WRITE,
                    "requestBody": {"required": True, **_json(_ref(RoomFields), "Room")},
                    "responses": {"200": room, **_errors(400, 401, 403, 404)},
                },
                "patch": {
                    "summary": "Change some fields of a room",
                    **WRITE,
                    "requestBody": {"required": True, **_json(_ref(RoomPatch), "Fields")},
                    "responses": {"200": room, **_errors(400, 401, 403, 404)},
                },
                "delete": {
                    "summary": "Delete a room",
                    **WRITE,
                    "responses": {"204": {"description": "Deleted"}, **_errors(401, 403, 404)},
                },
            },
            "/api/v1/rooms/{slug}/schedule": {
                "parameters": [SLUG],
                "get": {
                    "summary": "Upcoming sessions of one room",
                    "parameters": FILTERS[1:],
                    "responses": {"200": sessions, **_errors(400, 404)},
                },
            },
            "/api/v1/schedule": {
                "get": {
                    "summary": "Upcoming sessions of every room",
                    "parameters": FILTERS,
                    "responses": {"200": sessions, **_errors(400)},
                }
            },
            "/calendar.ics": {
                "get": {
                    "summary": "iCal feed of the upcoming sessions this caller may see",
                    "parameters": FILTERS,
                    "responses": {
                        "200": _json({"type": "string"}, "iCalendar", "text/calendar"),
                        "400": _json({"type": "string"}, "Unknown time zone", "text/plain"),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness: the database answers",
                    "responses": {"200": _json({"type": "object"}, '{"status": "ok"}')},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (keep it off the public network)",
                    "responses": {"200": _json({"type": "string"}, "Exposition", "text/plain")},
                }
            },
            **caption_paths(),
            **irc_paths(),
        },
    }
