"""Pages for people: the low-bandwidth captions page, a room's transcripts, ``/pid/<id>``."""

from __future__ import annotations

import json

from aiohttp import web

from orchestrator.access.policy import captioner
from orchestrator.app_keys import db_key
from orchestrator.captions.model import Session
from orchestrator.captions.opening import Busy, busy_response, opening_for
from orchestrator.captions.pid import normalize
from orchestrator.captions.present import CHROME_LANG, main_language, room_view, timed_events
from orchestrator.captions.readers import Reader, admit, room_or_none
from orchestrator.captions.service import captions_key, main_room
from orchestrator.problems import problem
from orchestrator.render import render
from orchestrator.rooms.policy import access_policy
from orchestrator.web.sessions import current_identity
from orchestrator.web.web_keys import wiki_key
from plenary import formats

SIZES = (1, 2, 3, 4, 5)
DEFAULT_SIZE = 3
EXPORTS = {
    "txt": "text/plain",
    "vtt": "text/vtt",
    "srt": "application/x-subrip",
    "json": "application/json",
}
# What /pid/<id> can answer by content negotiation, in order of preference on a tie.
NEGOTIATED = {"text/html": "html", "application/json": "json", "text/vtt": "vtt"}


async def captions_page(request: web.Request) -> web.Response:
    """The latest lines and the live stream's start; its reads take an opening slot
    (captions/opening.py), so many at once answer 503 + Retry-After rather than 500."""
    try:
        async with opening_for(request.app[db_key]).slot():
            return await _captions_page(request)
    except Busy:
        raise busy_response("pages") from None


async def _captions_page(request: web.Request) -> web.Response:
    room = request.match_info["room"]
    reader = await admit(request, main_room(room))
    captions = request.app[captions_key]
    try:
        size = int(request.query.get("size", DEFAULT_SIZE))
    except ValueError:
        size = DEFAULT_SIZE
    size = min(max(size, SIZES[0]), SIZES[-1])
    # Corrections made before the lines are read are in them: the stream goes on after
    # both the last line and the last such correction (docs/corrections.md).
    fixed = await captions.last_fix_pos(room)
    lines = await captions.latest(room, captions.settings.page_lines)
    after = max(lines[-1].seq, fixed) if lines else await captions.store.last_seq(room)
    return render(
        request,
        "captions.html",
        {
            "room": room,
            "view": await room_view(captions, room),
            "lines": lines,
            "after": after,
            "size": size,
            "sizes": SIZES,
            "notice": (await captions.policy(room)).notice,
            # A reader who came with ?token= keeps it in the page's stream and links.
            "token": _token(request, reader),
            "captioner": await _captioner(request, room, reader),
        },
    )


async def _captioner(request: web.Request, room: str, reader: Reader) -> bool:
    """Whether to link the editing view: a logged-in reader the room names a captioner."""
    found = await room_or_none(request, main_room(room))
    if found is None or not found.policy.get("captioners") or reader.kind == "token":
        return False
    who = await current_identity(request)
    if who is None:
        return False
    decision = await captioner(
        access_policy(found.policy), who, request.app.get(wiki_key), room=room
    )
    return decision.allowed


async def transcripts_page(request: web.Request) -> web.Response:
    """The room's transcripts; a room that keeps none and never kept one answers 404
    with the same sentence as its other pages."""
    room = request.match_info["room"]
    reader = await admit(request, main_room(room))
    captions = request.app[captions_key]
    sessions = await captions.store.sessions(room)
    policy = await captions.policy(room)
    return render(
        request,
        "transcripts.html",
        {"room": room, "view": await room_view(captions, room), "sessions": sessions,
         "notice": policy.notice, "token": _token(request, reader)},
        status=200 if sessions or policy.keeps_transcript else 404,
    )  # fmt: skip


def _token(request: web.Request, reader: Reader) -> str:
    """The ?token= that let this reader in, for the page's own links and stream."""
    return request.query.get("token", "") if reader.kind in ("token", "service", "admin") else ""


def negotiate(accept: str) -> str | None:
    """The representation /pid/<id> serves for an Accept header; None: 406.

    Each offered type takes the q of the most specific range that matches it; the
    highest q wins, and on a tie HTML, then JSON, then WebVTT.
    """
    if not accept.strip():
        return "html"
    ranges: list[tuple[str, float]] = []
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        ranges.append((media.lower(), q))
    best: tuple[tuple[float, int], str] | None = None
    for index, (offered, kind) in enumerate(NEGOTIATED.items()):
        matches = [(_specificity(media, offered), q) for media, q in ranges]
        matches = [m for m in matches if m[0] >= 0]
        if not matches:
            continue
        q = max(matches)[1]
        if q > 0 and (best is None or (q, -index) > best[0]):
            best = ((q, -index), kind)
    return best[1] if best else None


def _specificity(media_range: str, offered: str) -> int:
    if media_range == offered:
        return 2
    if media_range == offered.split("/")[0] + "/*":
        return 1
    return 0 if media_range == "*/*" else -1


async def pid(request: web.Request) -> web.Response:
    raw = request.match_info["pid"]
    ext = request.match_info.get("ext")
    canonical = normalize(raw)
    if canonical is None:
        raise problem(404, "not a Plenary identifier")
    if canonical != raw:
        raise web.HTTPMovedPermanently(f"/pid/{canonical}" + (f".{ext}" if ext else ""))
    store = request.app[captions_key].store
    session = await store.session(canonical)
    if session is None:
        raise problem(404, f"no transcript has the identifier {canonical}")
    kind = ext or negotiate(request.headers.get("Accept", ""))
    if kind is None:
        raise problem(
            406,
            "available: text/html, application/json, text/vtt "
            "(or /pid/<id>.txt, .vtt, .srt, .json)",
        )
    vary = {} if ext else {"Vary": "Accept"}
    if session.withdrawn:  # the stub is public and says only that it was withdrawn
        return _withdrawn(request, session, kind, vary)
    await admit(request, main_room(session.room), transcript=True)
    captions = await store.transcript(session)
    view = await room_view(request.app[captions_key], session.room)
    language = main_language((c.language for c in captions), view.lang)
    if kind == "html":
        response = render(
            request,
            "transcript.html",
            {"session": session, "lines": captions, "view": view, "page_lang": language,
             "chrome_lang": CHROME_LANG},
        )  # fmt: skip
        response.headers.update(vary)
        return response
    if kind == "json":
        history = await store.history(session)
        body = json.dumps(
            {
                "pid": session.pid,
                "room": session.room,
                "title": view.title,
                "language": language,
                "timezone": view.tz.key,
                "started_at": session.started_at_ms,
                "ended_at": session.ended_at_ms,
                # Each caption at its latest revision, with its corrections (old and new
                # text and speaker, who, when) for audit.
                "captions": [
                    {**c.to_json(), "history": [f.history_json() for f in history.get(c.seq, [])]}
                    for c in captions
                ],
            },
            ensure_ascii=False,
        )
    elif kind == "vtt":
        body = formats.to_vtt(timed_events(captions, session.started_at_ms), language)
    else:
        body = formats.write(timed_events(captions, session.started_at_ms), kind)
    return web.Response(text=body, content_type=EXPORTS[kind], charset="utf-8", headers=vary)


def _withdrawn(
    request: web.Request, session: Session, kind: str, vary: dict[str, str]
) -> web.Response:
    reason = session.withdrawn_reason or "Withdrawn."
    if kind == "html":
        response = render(request, "transcript_withdrawn.html", {"session": session}, status=410)
        response.headers.update(vary)
        return response
    if kind == "json":
        return web.json_response(
            {"pid": session.pid, "withdrawn": True, "reason": reason,
             "withdrawn_at": session.withdrawn_at_ms},
            status=410,
            headers=vary,
        )  # fmt: skip
    text = f"The transcript {session.pid} has been withdrawn. {reason}\n"
    if kind == "vtt":
        text = f"WEBVTT\n\nNOTE {text}"
    return web.Response(
        text=text, status=410, content_type=EXPORTS.get(kind, "text/plain"), charset="utf-8",
        headers=vary,
    )  # fmt: skip
