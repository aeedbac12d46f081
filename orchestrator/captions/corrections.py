"""Captioners (CART): correct captions, type them, push them from software (docs/corrections.md).

Who: the admin token (orchestrator.admin_token), or a person the room's policy names in
``captioners`` (LDAP group, wiki group, named
users; orchestrator.access.policy.captioner), logged in (browser session) or sending
their personal read token for the room as a bearer token (software: stenography and
respeaking tools), their LDAP groups asked again at each use. Anyone else gets 401/403.

- ``POST /api/v1/rooms/<room>/captions/<seq>/corrections``: JSON ``{"text", "speaker"}``
  (either may be left out: unchanged). A browser session must send its CSRF token in
  ``X-CSRF-Token`` (the /api/ prefix is exempt from the form middleware; a bearer token
  is not sent by a browser by itself).
- ``POST /api/v1/rooms/<room>/captions/typed``: ``text/plain``, one caption per line,
  speaker from ``?speaker=`` (or ``Speaker: text`` lines with ``?speaker_prefix=1``).
- ``GET /api/v1/rooms/<room>/captions/typed/ws``: a websocket; each text message is one
  caption (``{"text", "speaker"}`` JSON, or a plain line under ``?speaker=``); each is
  answered with ``{"seq": n}`` or ``{"error": …}``.
- ``/r/<room>/captions/edit``: the editing view (forms; CSRF by the middleware).

Every input goes through ``FixIn`` (valid Unicode, control characters removed, at most
captions.max_correction_chars); every action is rate limited per captioner, logged and
counted (``plenary_caption_corrections_total{outcome}``).
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from typing import Any

from aiohttp import WSMsgType, web
from aiohttp_session import get_session
from pydantic import BaseModel, ConfigDict, ValidationError

from orchestrator import metrics
from orchestrator.access.policy import captioner
from orchestrator.access.read_tokens import ReadTokens, owner_of
from orchestrator.app_keys import db_key, settings_key
from orchestrator.captions.model import Caption, Correction
from orchestrator.captions.present import room_view
from orchestrator.captions.readers import _owner_now, room_or_none
from orchestrator.captions.service import Captions, UnknownRoom, captions_key, main_room
from orchestrator.captions.store import NoSuchCaption, TooLate
from orchestrator.problems import bearer, match_token, problem
from orchestrator.rooms.policy import access_policy
from orchestrator.web.sessions import current_identity
from orchestrator.web.web_keys import wiki_key
from plenary import wire
from plenary.events import CaptionEvent

log = logging.getLogger(__name__)

EDIT_LINES = 20  # recent lines the editing view offers


class FixIn(BaseModel):
    """A correction or a typed caption as it crosses the wire."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: wire.Text | None = None
    speaker: wire.Name | None = None


def _fix_in(data: Any, limit: int, *, need_text: bool) -> FixIn:
    try:
        fix = FixIn.model_validate(data)
    except ValidationError as exc:
        err = wire.wire_error(exc)
        raise problem(400, err.detail, errors=err.errors) from None
    if fix.text is not None:
        fix = fix.model_copy(update={"text": " ".join(fix.text.split())})
        if len(fix.text or "") > limit:
            raise problem(400, f"text: at most {limit} characters, not {len(fix.text or '')}")
    if fix.speaker is not None:
        fix = fix.model_copy(update={"speaker": " ".join(fix.speaker.split())})
    if need_text and not fix.text:
        raise problem(400, "text: a caption needs some text")
    if fix.text == "":
        raise problem(400, "text: a correction cannot empty a caption")
    return fix


async def captioner_of(request: web.Request, slug: str, *, api: bool) -> str:
    """The captioner's name for room ``slug``, or the refusal (401/403/404, counted)."""
    room = await room_or_none(request, slug)
    if room is None:
        raise problem(404, f"no room named {slug!r}")
    token = bearer(request)
    admin = request.app[settings_key].orchestrator.admin_token
    if token and match_token(token, {"admin": admin}):
        return "admin"  # the operators (orchestrator.admin_token) may correct any room
    if token:
        found = await ReadTokens(request.app[db_key]).check(token)
        if found is None or found.state() != "active" or found.room != slug:
            metrics.CORRECTIONS.labels(outcome="refused").inc()
            raise problem(401, "this token is not an active read token of this room's captioner",
                          headers={"WWW-Authenticate": 'Bearer realm="plenary"'})  # fmt: skip
        who = await _owner_now(request, found.identity)
    else:
        found_who = await current_identity(request)
        if found_who is None:
            metrics.CORRECTIONS.labels(outcome="refused").inc()
            raise problem(401, "log in as one of this room's captioners, or send your read "
                          "token as 'Authorization: Bearer <token>'",
                          headers={"WWW-Authenticate": 'Bearer realm="plenary"'})  # fmt: skip
        who = found_who
        if api:
            session = await get_session(request)
            expected = session.get("csrf")
            given = request.headers.get("X-CSRF-Token", "")
            if (
                not isinstance(expected, str)
                or not given
                or not hmac.compare_digest(expected.encode(), given.encode())
            ):
                metrics.CORRECTIONS.labels(outcome="refused").inc()
                raise problem(403, "a browser session must send its CSRF token in X-CSRF-Token")
    decision = await captioner(
        access_policy(room.policy), who, request.app.get(wiki_key), room=slug
    )
    if not decision.allowed:
        metrics.CORRECTIONS.labels(outcome="refused").inc()
        status = 503 if decision.outcome == "unavailable" else 403
        raise problem(status, f"you may not caption room {slug!r}: {decision.reason}")
    return owner_of(who)


def _limited(request: web.Request, captions: Captions, who: str) -> None:
    if not captions.allow(who, captions.settings.corrections_per_minute):
        metrics.CORRECTIONS.labels(outcome="limited").inc()
        log.warning("captioner %s is over captions.corrections_per_minute", who)
        raise problem(429, "too many corrections: wait a minute",
                      headers={"Retry-After": "60"})  # fmt: skip


async def apply(
    captions: Captions, room: str, seq: int, fix: FixIn, who: str, outcome: str = "corrected"
) -> Correction:
    """Revise caption ``seq``; 404 / 409 problems when it cannot be."""
    try:
        done = await captions.correct(room, seq, fix.text, fix.speaker, who)
    except NoSuchCaption as exc:
        metrics.CORRECTIONS.labels(outcome="missing").inc()
        raise problem(404, str(exc)) from None
    except TooLate as exc:
        metrics.CORRECTIONS.labels(outcome="late").inc()
        hours = captions.settings.correction_window_hours
        raise problem(409, f"{exc}: corrections are allowed for {hours:g} h after it") from None
    metrics.CORRECTIONS.labels(outcome=outcome).inc()
    log.info("%s: caption %d of room %s revision %d by %s (pos %d)", outcome, seq, room,
             done.revision, who, done.pos)  # fmt: skip
    return done


async def typed(captions: Captions, room: str, text: str, speaker: str, who: str) -> Caption:
    """A caption typed by captioner ``who``, attributed to ``speaker``."""
    view = await room_view(captions, room)
    mid = f"typed-{secrets.token_hex(12)}"
    event = CaptionEvent(
        room=room, speaker=speaker or "Captioner", language=view.lang, text=text, is_final=True,
        start=0.0, end=0.0, message_id=mid, event_id=mid,
    )  # fmt: skip
    try:
        caption = await captions.accept(event)
    except UnknownRoom as exc:
        raise problem(404, str(exc)) from None
    assert caption is not None
    metrics.CORRECTIONS.labels(outcome="typed").inc()
    log.info("typed: caption %d of room %s by %s", caption.seq, room, who)
    return caption


def _seq(request: web.Request) -> int:
    try:
        return int(request.match_info["seq"])
    except ValueError:
        raise problem(400, "the caption number must be an integer") from None


async def _json(request: web.Request) -> Any:
    try:
        return wire.json_body(await request.read())
    except wire.WireError as exc:
        raise problem(400, exc.detail) from None


async def post_correction(request: web.Request) -> web.Response:
    room = request.match_info["room"]
    who = await captioner_of(request, main_room(room), api=True)
    captions = request.app[captions_key]
    _limited(request, captions, who)
    fix = _fix_in(await _json(request), captions.settings.max_correction_chars, need_text=False)
    done = await apply(captions, room, _seq(request), fix, who)
    return web.json_response(done.to_json(), dumps=lambda o: json.dumps(o, ensure_ascii=False))


async def post_typed(request: web.Request) -> web.Response:
    """text/plain, one caption per line (empty lines skipped); all lines are checked first."""
    room = request.match_info["room"]
    who = await captioner_of(request, main_room(room), api=True)
    if request.content_type != "text/plain":
        raise problem(415, f"Content-Type must be text/plain, not {request.content_type!r}")
    captions = request.app[captions_key]
    try:
        body = (await request.read()).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise problem(400, f"body is not UTF-8: {exc.reason} at byte {exc.start}") from None
    speaker = request.query.get("speaker", "")
    limit = captions.settings.max_correction_chars
    lines = []
    for n, raw in enumerate(body.splitlines()):
        if not raw.strip():
            continue
        said_by, text = speaker, raw
        if request.query.get("speaker_prefix") == "1" and ": " in raw:
            said_by, text = raw.split(": ", 1)
        try:
            lines.append(_fix_in({"text": text, "speaker": said_by}, limit, need_text=True))
        except web.HTTPException as exc:
            raise problem(400, f"line {n + 1}: {json.loads(exc.text or '{}')['detail']}") from None
    seqs = []
    for line in lines:
        _limited(request, captions, who)
        caption = await typed(captions, room, line.text or "", line.speaker or "", who)
        seqs.append(caption.seq)
    return web.json_response({"accepted": seqs}, status=202)


async def typed_ws(request: web.Request) -> web.WebSocketResponse:
    room = request.match_info["room"]
    who = await captioner_of(request, main_room(room), api=True)
    captions = request.app[captions_key]
    speaker = request.query.get("speaker", "")
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type != WSMsgType.TEXT:
            if msg.type == WSMsgType.BINARY:
                await ws.send_json({"error": "send text messages: one caption each"})
            continue
        data: Any = {"text": msg.data, "speaker": speaker}
        if msg.data.lstrip().startswith("{"):
            try:
                data = json.loads(msg.data)
            except json.JSONDecodeError as exc:
                await ws.send_json({"error": f"not JSON: {exc.msg}"})
                continue
        try:
            line = _fix_in(data, captions.settings.max_correction_chars, need_text=True)
            if not captions.allow(who, captions.settings.corrections_per_minute):
                metrics.CORRECTIONS.labels(outcome="limited").inc()
                await ws.send_json({"error": "too many captions: wait a minute"})
                continue
            caption = await typed(captions, room, line.text or "", line.speaker or "", who)
        except web.HTTPException as exc:
            await ws.send_json({"error": json.loads(exc.text or "{}").get("detail", "refused")})
            continue
        await ws.send_json({"seq": caption.seq})
    return ws
