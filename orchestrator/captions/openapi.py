"""The captions concern's part of the OpenAPI document (orchestrator/rooms/openapi.py merges
it): producers, Jigasi, Prosody's event posts, readers (JSON poll, text and SSE streams,
the captions and transcripts pages, persistent identifiers) and withdrawal.

Errors are problem documents (``#/components/schemas/Problem``, orchestrator/problems.py).
"""

from __future__ import annotations

from typing import Any

from orchestrator.captions.event_sync import KINDS
from plenary.wire import ProducerEvent, ServedCaption, ServedCorrection

PROBLEM = {"$ref": "#/components/schemas/Problem"}
ERRORS = {
    400: "The body, a field or a query parameter is not valid (detail names it)",
    401: "No credentials: a bearer token (or, for readers, a login) is needed",
    403: "The token is not valid for this, the feature is off, or the room refuses the reader",
    404: "No room (or transcript, or caption) by that name",
    406: "None of the representations asked for (Accept)",
    409: "The caption is past the correction window (captions.correction_window_hours)",
    410: "The transcript was withdrawn; the stub says only that",
    415: "The body is not of the media type the endpoint takes",
    429: "Too many corrections or typed captions (captions.corrections_per_minute)",
}
STRING = {"type": "string"}
INT = {"type": "integer"}
# The served shapes and the producer input, generated from the one wire schema
# (plenary/wire): what Caption.to_json and Correction.to_json serialize through.
CAPTION = ServedCaption.model_json_schema(mode="serialization")
CORRECTION = ServedCorrection.model_json_schema(mode="serialization")
EVENT = ProducerEvent.model_json_schema()
RESULT = {
    "type": "object",
    "required": ["id", "status", "room", "seq", "duplicate"],
    "properties": {
        "id": STRING,
        "status": {"type": "integer", "enum": [200, 404],
                   "description": "200: taken; 404: no such room (nothing stored)"},
        "room": STRING,
        "seq": {"type": ["integer", "null"]},
        "duplicate": {"type": "boolean"},
        "error": STRING,
    },
}  # fmt: skip
ROOM = {"name": "room", "in": "path", "required": True, "schema": STRING}
PID = {"name": "pid", "in": "path", "required": True, "schema": STRING,
       "description": "Persistent identifier, e.g. k7m2-9qxd-3hwa"}  # fmt: skip
AFTER = {"name": "after", "in": "query", "required": False, "schema": INT,
         "description": "Captions numbered after this (Last-Event-ID wins for SSE)"}  # fmt: skip
TOKEN = {"name": "token", "in": "query", "required": False, "schema": STRING,
         "description": "A read or service token instead of Authorization: Bearer"}  # fmt: skip
READ: list[dict[str, list[str]]] = [{"reader": []}, {"service_reader": []}, {"admin": []}, {}]


def _body(schema: dict[str, Any], text: str, media: str = "application/json") -> dict[str, Any]:
    return {"description": text, "content": {media: {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): _body(PROBLEM, ERRORS[c], "application/problem+json") for c in codes}


def _read(summary: str, media: str, schema: dict[str, Any], extra: list[Any]) -> dict[str, Any]:
    """A reading endpoint: whoever the room admits, a read token, or a service token."""
    return {"get": {
        "summary": summary, "security": READ, "parameters": [ROOM, TOKEN, *extra],
        "responses": {"200": _body(schema, "Readable by this reader", media),
                      "302": {"description": "A browser not logged in: to the login page"},
                      **_errors(400, 401, 403, 404)},
    }}  # fmt: skip


def openapi_paths() -> dict[str, Any]:
    producer: list[dict[str, list[str]]] = [{"producer": []}]
    accepted = {"type": "object", "properties": {"accepted": {"type": "array", "items": RESULT},
                                                 "duplicates": INT, "refused": INT}}  # fmt: skip
    poll = {"type": "object", "required": ["room", "after", "events", "next_after", "last_seq"],
            "properties": {"room": STRING, "after": INT, "events": {"type": "array",
                           "items": CAPTION}, "corrections": {"type": "array", "items": CORRECTION,
                           "description": "Corrections after `after` (as the SSE "
                           "correction event)"},
                           "next_after": INT, "last_seq": INT}}  # fmt: skip
    jigasi = {"type": "object", "required": ["event", "room_name"],
              "description": "Jigasi's SEND_JSON_REMOTE_URLS post"}  # fmt: skip
    jigasi_op = {
        "summary": "A Jigasi transcription post (secret in the URL, X-Plenary-Secret or "
        "bearer)",
        "requestBody": {"required": True, **_body(jigasi, "The post")},
        "responses": {"200": _body({"type": "object", "properties": {
            "event": STRING, "room": STRING, "seq": INT}}, "Taken"),
            **_errors(400, 401, 403, 404)},
    }  # fmt: skip
    prosody = {
        "summary": "A Prosody meeting or occupant post (event_sync, mod_plenary_occupants)",
        "security": [{"prosody": []}],
        "requestBody": {"required": True, **_body({"type": "object"}, "The post")},
        "responses": {"202": _body({"type": "object", "required": ["event", "recorded"],
            "properties": {"event": STRING, "recorded": {"type": "boolean"}, "meeting_id": STRING,
                           "room": STRING, "why": STRING}}, "Recorded, or why not"),
            **_errors(400, 401, 403)},
    }  # fmt: skip
    events = {f"/api/v1/events/{kind}": {"post": prosody} for kind in KINDS}
    transcript = {"type": "object", "properties": {"pid": STRING, "room": STRING,
                  "started_at": INT, "ended_at": {"type": ["integer", "null"]},
                  "captions": {"type": "array", "items": CAPTION}}}  # fmt: skip
    export = {"name": "ext", "in": "path", "required": True,
              "schema": {"type": "string", "enum": ["txt", "vtt", "srt", "json"]}}  # fmt: skip
    pid_responses = {
        "200": {"description": "The transcript", "content": {
            "text/html": {"schema": STRING}, "application/json": {"schema": transcript},
            "text/vtt": {"schema": STRING}, "text/plain": {"schema": STRING},
            "application/x-subrip": {"schema": STRING}}},
        "301": {"description": "To the identifier's canonical spelling"},
        "302": {"description": "A browser not logged in: to the login page"},
        **_errors(401, 403, 404, 406, 410),
    }  # fmt: skip
    return {
        "/api/v1/captions": {"post": {
            "summary": "A captioner's batch of events; per-event results (404: unknown room)",
            "security": producer,
            "requestBody": {"required": True, **_body({"type": "object", "required": ["events"],
                "properties": {"events": {"type": "array", "items": EVENT,
                                          "maxItems": 1000}}}, "Events, oldest first")},
            "responses": {"200": _body(accepted, "Every event's result"),
                          **_errors(400, 401, 403)}}},
        "/api/v1/rooms/{room}/captions": {
            "get": {**_read("Finals after a number, oldest first (JSON poll)",
                            "application/json", poll, [AFTER, {"name": "limit", "in": "query",
                            "required": False, "schema": {**INT, "minimum": 1,
                            "maximum": 1000}}])["get"]},
            "post": {
                "summary": "Captions for one room (one event, or {\"events\": [...]})",
                "security": producer, "parameters": [ROOM],
                "requestBody": {"required": True, **_body({"oneOf": [EVENT, {
                    "type": "object", "required": ["events"], "properties": {
                        "events": {"type": "array", "items": EVENT}}}]}, "Events")},
                "responses": {"202": _body({"type": "object", "properties": {"accepted": {
                    "type": "array", "items": {"type": ["integer", "null"]}}}}, "Taken"),
                    **_errors(400, 401, 403, 404)}},
        },
        "/r/{room}/captions": _read("The low-bandwidth captions page", "text/html", STRING,
                                    [{"name": "size", "in": "query", "required": False,
                                      "schema": INT}]),
        "/r/{room}/captions.txt": _read("Captions as plain text lines, as they come",
                                        "text/plain", STRING, [AFTER]),
        "/r/{room}/captions/stream": _read("Server-sent events: caption (id = seq), "
                                           "correction (id = its position), partial, end",
                                           "text/event-stream", STRING,
                                           [AFTER, {"name": "partials", "in": "query",
                                                    "required": False, "schema": STRING}]),
        "/r/{room}/transcripts": _read("The room's transcripts (404 with the reason when it "
                                       "keeps none)", "text/html", STRING, []),
        "/pid/{pid}": {"get": {"summary": "A transcript, by content negotiation",
                               "security": READ, "parameters": [PID, TOKEN],
                               "responses": pid_responses}},
        "/pid/{pid}.{ext}": {"get": {"summary": "A transcript as TXT, WebVTT, SRT or JSON",
                                     "security": READ, "parameters": [PID, export, TOKEN],
                                     "responses": pid_responses}},
        "/api/v1/transcripts/{pid}": {"delete": {
            "summary": "Withdraw a transcript, leaving a stub (admin token)",
            "security": [{"admin": []}],
            "parameters": [PID, {"name": "reason", "in": "query", "required": False,
                                 "schema": STRING}],
            "responses": {"204": {"description": "Withdrawn"}, **_errors(401, 403, 404)}}},
        "/api/v1/jigasi": {"post": jigasi_op},
        "/api/v1/jigasi/{secret}": {"post": {**jigasi_op, "parameters": [
            {"name": "secret", "in": "path", "required": True, "schema": STRING}]}},
        **events,
        **correction_paths(),
    }  # fmt: skip


def correction_paths() -> dict[str, Any]:
    """Captioners (docs/corrections.md): corrections and typed captions."""
    from orchestrator.captions.corrections import FixIn

    captioner: list[dict[str, list[str]]] = [
        {"captioner": []},
        {"captioner_session": []},
        {"admin": []},
    ]
    fix = FixIn.model_json_schema()
    seq = {"name": "seq", "in": "path", "required": True, "schema": INT}
    speaker = {"name": "speaker", "in": "query", "required": False, "schema": STRING,
               "description": "Whom the captions are attributed to"}  # fmt: skip
    return {
        "/api/v1/rooms/{room}/captions/{seq}/corrections": {"post": {
            "summary": "Correct a caption (a new revision; text and/or speaker). A browser "
            "session must send X-CSRF-Token",
            "security": captioner, "parameters": [ROOM, seq],
            "requestBody": {"required": True, **_body(fix, "The new text and/or speaker "
                            "(at most captions.max_correction_chars characters)")},
            "responses": {"200": _body(CORRECTION, "The correction, published to readers"),
                          **_errors(400, 401, 403, 404, 409, 429)}}},
        "/api/v1/rooms/{room}/captions/typed": {"post": {
            "summary": "Captions typed by a captioner or sent by stenography/respeaking "
            "software: text/plain, one caption per line",
            "security": captioner,
            "parameters": [ROOM, speaker, {"name": "speaker_prefix", "in": "query",
                           "required": False, "schema": {"type": "string", "enum": ["1"]},
                           "description": "1: lines are 'Speaker: text'"}],
            "requestBody": {"required": True, **_body(STRING, "Lines (UTF-8)", "text/plain")},
            "responses": {"202": _body({"type": "object", "properties": {"accepted": {
                "type": "array", "items": INT}}}, "The captions' numbers"),
                **_errors(400, 401, 403, 404, 415, 429)}}},
        "/api/v1/rooms/{room}/captions/typed/ws": {"get": {
            "summary": "Websocket for captioning software: each text message is one caption "
            "(a line, or {\"text\", \"speaker\"} JSON), answered {\"seq\": n} or {\"error\": …}",
            "security": captioner, "parameters": [ROOM, speaker],
            "responses": {"101": {"description": "Switching to the websocket"},
                          **_errors(401, 403, 404)}}},
    }  # fmt: skip


def security_schemes() -> dict[str, Any]:
    bearer = {"type": "http", "scheme": "bearer"}
    return {
        "producer": {**bearer, "description": "captions.producers (or captions.producer_token)"},
        "reader": {**bearer, "description": "A personal read token from the room page "
                   "(also as ?token=), or a logged-in session"},
        "prosody": {**bearer, "description": "captions.event_sync_secret"},
        "captioner": {**bearer, "description": "The personal read token of a person the "
                      "room's policy names in captioners"},
        "captioner_session": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token",
                              "description": "A captioner's logged-in session with its "
                              "CSRF token"},
    }  # fmt: skip
