"""Caption producers and machine readers: authenticated POSTs, Jigasi posts, JSON polling.

Every producer input is read by the one wire schema (plenary/wire): a bad field is a 400
naming it, a timestamp more than a day from server time is replaced by the arrival time.
Errors are problem documents (orchestrator/problems.py). Captions for a room Plenary does
not know are refused with 404 unless captions.accept_unknown_rooms: a batch
(``POST /api/v1/captions``) still stores its other events and answers 200 with a
per-event ``status`` (docs/delivery.md), so one stray meeting never costs good captions.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import Any

from aiohttp import web

from orchestrator import metrics
from orchestrator.app_keys import settings_key
from orchestrator.captions import jigasi
from orchestrator.captions.model import Caption, Correction
from orchestrator.captions.readers import admit
from orchestrator.captions.service import UnknownRoom, captions_key, main_room
from orchestrator.captions.store import Duplicate, now_ms
from orchestrator.problems import bearer, check_bearer, check_token, problem
from plenary import wire
from plenary.events import CaptionEvent

log = logging.getLogger(__name__)

MAX_LIMIT = 1000
MAX_BATCH = 1000  # events per POST /api/v1/captions
_seen_producers: set[str] = set()  # producers already named in the log
LOG_EVERY = 60.0  # seconds between warnings about one room's replaced timestamps
_replaced: dict[str, int] = {}  # captions per room whose timestamp was replaced
_replaced_logged: dict[str, float] = {}


def bad_request(message: str, errors: list[dict[str, str]] | None = None) -> web.HTTPException:
    """400 naming the field; ``errors`` lists every bad field (``field``, ``message``)."""
    if errors:
        return problem(400, message, errors=errors)
    return problem(400, message)


def after_param(request: web.Request) -> int | None:
    """Where a reader resumes: ``Last-Event-ID`` (SSE reconnects) wins over ``?after=``."""
    raw = request.headers.get("Last-Event-ID") or request.query.get("after")
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"after / Last-Event-ID must be a caption number, not {raw!r}") from None
    if value < 0:
        raise bad_request("after / Last-Event-ID must not be negative")
    return value


def _producer(request: web.Request) -> str:
    """The name of the producer whose bearer token came (captions.producers, or
    ``producer_token`` for the older single token); a problem otherwise. The Jitsi
    signing secret is never a producer credential, whatever the settings say."""
    settings = request.app[settings_key]
    jwt_secret = settings.jitsi.app_secret
    tokens = dict(settings.captions.producers)
    if settings.captions.producer_token:
        tokens.setdefault("producer_token", settings.captions.producer_token)
    tokens = {name: t for name, t in tokens.items() if t and t != jwt_secret}
    try:
        return check_bearer(request, tokens, "posting captions over HTTP", "captions.producers")
    except web.HTTPForbidden:
        if tokens:
            log.warning("refused captions from %s: unknown producer token", request.remote)
        raise


async def _json_body(request: web.Request) -> Any:
    try:
        return wire.json_body(await request.read())
    except wire.WireError as exc:
        raise bad_request(exc.detail) from None


def _parse(room: str | None, items: list[Any]) -> list[tuple[CaptionEvent, int]]:
    """Every posted event checked against the wire schema (all or nothing), each with
    the time it is filed at: its timestamp, or the arrival time when it gave none or one
    outside the window of server time (logged: the caption itself is good)."""
    arrival = now_ms()
    parsed = []
    for n, item in enumerate(items):
        try:
            event, timestamp = wire.producer_event(item, n, room)
        except wire.WireError as exc:
            raise bad_request(exc.detail, exc.errors) from None
        room_key = event.room or event.meeting_id
        parsed.append((event, _filed_at(timestamp, arrival, f"events[{n}]", room_key)))
    return parsed


def _filed_at(timestamp: int | None, arrival: int, where: str, room: str) -> int:
    sane = wire.sane_time(timestamp, arrival)
    if sane is None and timestamp is not None:
        if len(_replaced) > 10_000:  # many meeting ids: forget the counts, keep going
            _replaced.clear()
            _replaced_logged.clear()
        _replaced[room] = _replaced.get(room, 0) + 1
        if time.monotonic() - _replaced_logged.get(room, -LOG_EVERY) >= LOG_EVERY:
            _replaced_logged[room] = time.monotonic()
            log.warning(
                "%s.timestamp %d for room %r is more than a day from server time (%d): filed"
                " at arrival (%d such captions for this room so far; logged once a minute)",
                where, timestamp, room, arrival, _replaced[room],
            )  # fmt: skip
    return arrival if sane is None else sane


async def post_batch(request: web.Request) -> web.Response:
    """``POST /api/v1/captions``: ``{"events": [...]}`` from a captioner, each event with
    its own id, room or meeting_id. All or nothing: one bad event refuses the batch. A
    final whose id was stored before is a duplicate (its seq is the one it got then).
    An empty list checks the token and that the orchestrator is up."""
    producer = _producer(request)
    data = await _json_body(request)
    if not isinstance(data, dict) or not isinstance(data.get("events"), list):
        raise bad_request('body must be {"events": [...]}')
    items: list[Any] = data["events"]
    if len(items) > MAX_BATCH:
        raise bad_request(f"events: at most {MAX_BATCH} per request, not {len(items)}")
    parsed = _parse(None, items)
    if producer not in _seen_producers:
        _seen_producers.add(producer)
        log.info("captions from producer %r (%s)", producer, request.remote)
    captions = request.app[captions_key]
    results: list[dict[str, Any]] = []
    for event, at_ms in parsed:
        try:
            caption = await captions.accept(event, at_ms)
        except UnknownRoom as exc:
            results.append(
                {"id": event.event_id, "status": 404, "room": exc.room, "seq": None,
                 "duplicate": False, "error": str(exc)}
            )  # fmt: skip
            continue
        final = caption is not None and caption.is_final
        results.append(
            {
                "id": event.event_id,
                "status": 200,
                "room": caption.room if caption is not None else "",
                "seq": caption.seq if final and caption is not None else None,
                "duplicate": isinstance(caption, Duplicate),
            }
        )
    duplicates = sum(1 for r in results if r["duplicate"])
    refused = sum(1 for r in results if r["status"] != 200)
    if refused:
        log.warning("producer %r: %d of %d events for unknown rooms refused", producer,
                    refused, len(results))  # fmt: skip
    log.debug("producer %r posted %d events (%d duplicates)", producer, len(results), duplicates)
    return web.json_response({"accepted": results, "duplicates": duplicates, "refused": refused})


async def post_captions(request: web.Request) -> web.Response:
    """``POST /api/v1/rooms/<room>/captions``: one event object or ``{"events": [...]}``."""
    _producer(request)
    room = request.match_info["room"]
    data = await _json_body(request)
    items = data.get("events") if isinstance(data, dict) and "events" in data else [data]
    if not isinstance(items, list) or not items:
        raise bad_request("events must be a non-empty list")
    parsed = _parse(room, items)
    captions = request.app[captions_key]
    seqs = []
    for event, at_ms in parsed:
        try:
            caption = await captions.accept(event, at_ms)
        except UnknownRoom as exc:
            raise problem(404, str(exc)) from None
        seqs.append(caption.seq if caption is not None and caption.is_final else None)
    return web.json_response({"accepted": seqs}, status=202)


async def jigasi_post(request: web.Request) -> web.Response:
    """Jigasi's ``SEND_JSON_REMOTE_URLS``: secret in the URL or the X-Plenary-Secret header."""
    given = (
        request.match_info.get("secret")
        or request.headers.get("X-Plenary-Secret", "")
        or bearer(request)
    )
    captions = request.app[captions_key]
    check_token(given, {"jigasi": captions.settings.jigasi_secret}, "Jigasi posting",
                "captions.jigasi_secret")  # fmt: skip
    if request.content_type != "application/json":
        raise bad_request(f"Content-Type must be application/json, not {request.content_type!r}")
    try:
        post = jigasi.parse(await request.read())
    except jigasi.JigasiError as exc:
        raise bad_request(exc.detail, exc.errors) from None
    at = _filed_at(post.timestamp_ms, now_ms(), "body", post.room)
    post = dataclasses.replace(post, timestamp_ms=at)
    try:
        caption = await captions.jigasi(post)
    except UnknownRoom as exc:
        raise problem(404, str(exc)) from None
    body: dict[str, Any] = {"event": post.event, "room": post.room}
    if caption is not None and caption.is_final:
        body["seq"] = caption.seq
    return web.json_response(body)


async def poll(request: web.Request) -> web.Response:
    """``GET /api/v1/rooms/<room>/captions?after=N&limit=M``: finals after N, oldest first,
    each at its latest revision, and the corrections made after N (``corrections``)."""
    room = request.match_info["room"]
    await admit(request, main_room(room))
    after = after_param(request) or 0
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        raise bad_request("limit must be a number") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise bad_request(f"limit must be between 1 and {MAX_LIMIT}")
    service = request.app[captions_key]
    store = service.store
    # Captions (at their latest revision) and corrections after ``after``, in stream order.
    items = await service.stream_after(room, after, limit)
    response = web.json_response(
        {
            "room": room,
            "after": after,
            "events": [c.to_json() for c in items if isinstance(c, Caption)],
            "corrections": [c.to_json() for c in items if isinstance(c, Correction)],
            "next_after": items[-1].position if items else after,
            "last_seq": await store.last_seq(room),
        },
        dumps=lambda obj: json.dumps(obj, ensure_ascii=False),
    )
    # A poll holds no connection open, so it counts bytes only, not a subscriber.
    metrics.TEXT_SENT_BYTES.labels(kind="json").inc(response.content_length or 0)
    return response


async def withdraw(request: web.Request) -> web.Response:
    """``DELETE /api/v1/transcripts/<pid>``: remove a transcript, leaving a withdrawn stub.
    An administrator's act: the admin token (orchestrator.admin_token)."""
    settings = request.app[settings_key]
    check_bearer(request, {"admin": settings.orchestrator.admin_token},
                 "withdrawing transcripts", "orchestrator.admin_token")  # fmt: skip
    reason = request.query.get("reason") or "Withdrawn by the organizers."
    if not await request.app[captions_key].store.withdraw(request.match_info["pid"], reason):
        raise problem(404, "no such transcript")
    return web.Response(status=204)
