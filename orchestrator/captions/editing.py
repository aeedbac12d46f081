"""The captioner's editing view, ``/r/<room>/captions/edit``: plain forms, no script needed.

Server-rendered and small (a slow connection loads it quickly), every action one form:
correct a recent line (text and speaker), type a caption attributed to a speaker, undo
one's last correction (a new revision restoring what it replaced: history is never
rewritten). The keyboard is enough: a list of links jumps to any recent line, Tab moves
between its fields, Enter submits, and the page comes back at the line just corrected.
Forms are CSRF-checked by the middleware; the result
is said once on the next page (a status message), after a 303 (reload does not resend).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from aiohttp_session import get_session

from orchestrator.captions.corrections import EDIT_LINES, FixIn, _fix_in, apply, captioner_of, typed
from orchestrator.captions.present import room_view
from orchestrator.captions.service import captions_key, main_room

FLASH = "caption_edit_flash"


async def view(request: web.Request) -> web.Response:
    from orchestrator.web.pages import page

    room = request.match_info["room"]
    await _captioner(request, room)
    captions = request.app[captions_key]
    lines = await captions.latest(room, EDIT_LINES)
    session = await get_session(request)
    flash = session.pop(FLASH, None)
    speakers = sorted({c.speaker for c in lines if c.speaker})
    view = await room_view(captions, room)
    return await page(
        request,
        "captions_edit.html",
        {"room": room, "view": view, "lines": list(reversed(lines)), "speakers": speakers,
         "flash": flash if isinstance(flash, dict) else None,
         "max_chars": captions.settings.max_correction_chars},
    )  # fmt: skip


async def act(request: web.Request) -> web.Response:
    room = request.match_info["room"]
    who = await _captioner(request, room)
    captions = request.app[captions_key]
    form = await request.post()
    action = str(form.get("action", ""))
    limit = captions.settings.max_correction_chars
    anchor = ""
    try:
        if not captions.allow(who, captions.settings.corrections_per_minute):
            raise web.HTTPTooManyRequests(
                text=json.dumps({"detail": "too many corrections: wait a minute"})
            )
        if action == "correct":
            seq = int(str(form.get("seq", "")))
            fix = _fix_in(_fields(form), limit, need_text=True)
            done = await apply(captions, room, seq, fix, who)
            message = f"Line {seq} corrected (revision {done.revision})."
            anchor = f"#line-{seq}"
        elif action == "type":
            line = _fix_in(_fields(form), limit, need_text=True)
            caption = await typed(captions, room, line.text or "", line.speaker or "", who)
            message = f"Caption {caption.seq} sent."
        elif action == "undo":
            last = await captions.last_correction(room, who)
            if last is None:
                raise web.HTTPNotFound(text=json.dumps({"detail": "you made no correction here"}))
            back = FixIn(text=last.old_text, speaker=last.old_speaker)
            done = await apply(captions, room, last.seq, back, who, outcome="undone")
            message = f"Your correction of line {last.seq} undone (revision {done.revision})."
            anchor = f"#line-{last.seq}"
        else:
            raise web.HTTPBadRequest(text=json.dumps({"detail": f"unknown action {action!r}"}))
        flash = {"ok": True, "message": message}
    except ValueError:
        flash = {"ok": False, "message": "The line number is not a number."}
    except web.HTTPException as exc:
        try:
            detail = json.loads(exc.text or "{}").get("detail", exc.reason)
        except json.JSONDecodeError:
            detail = exc.reason
        flash = {"ok": False, "message": f"Not done: {detail}"}
    session = await get_session(request)
    session[FLASH] = flash
    raise web.HTTPSeeOther(f"/r/{room}/captions/edit{anchor}")


def _fields(form: Any) -> dict[str, str]:
    return {"text": str(form.get("text", "")), "speaker": str(form.get("speaker", ""))}


async def _captioner(request: web.Request, room: str) -> str:
    from orchestrator.captions.readers import wants_html

    try:
        return await captioner_of(request, main_room(room), api=False)
    except web.HTTPUnauthorized:
        if wants_html(request) or request.method == "POST":
            raise web.HTTPFound(f"/login?next=/r/{room}/captions/edit") from None
        raise
