"""``POST /api/v1/events/<room|occupant>/<…>``: Prosody's meeting and occupant posts.

Senders: jitsi-contrib's event_sync component (``api_prefix`` = ``https://<plenary>/api/v1``)
and Plenary's mod_plenary_occupants (deploy/prosody/). Both send
``Authorization: Bearer <captions.event_sync_secret>``. Answers come quickly: one
small write, then 202 (event_sync retries on 5xx only).
"""

from __future__ import annotations

import hmac
import json

from aiohttp import web

from orchestrator.captions import event_sync
from orchestrator.captions.service import captions_key

PATH = "/api/v1/events/{kind:(?:room|occupant)/[a-z]+}"


def _refuse(status: type[web.HTTPException], message: str) -> web.HTTPException:
    headers = {"WWW-Authenticate": "Bearer"} if status is web.HTTPUnauthorized else None
    return status(
        text=json.dumps({"error": message}), content_type="application/json", headers=headers
    )


def _authorize(request: web.Request) -> None:
    expected = request.app[captions_key].settings.event_sync_secret
    if not expected:
        raise _refuse(
            web.HTTPForbidden,
            "Prosody event posts are not enabled on this server: set "
            "captions.event_sync_secret and send it as 'Authorization: Bearer <secret>'",
        )
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise _refuse(web.HTTPUnauthorized, "send 'Authorization: Bearer <event_sync_secret>'")
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise _refuse(web.HTTPForbidden, "wrong secret for Prosody event posts")


async def post_event(request: web.Request) -> web.Response:
    _authorize(request)
    kind = request.match_info["kind"]
    if kind not in event_sync.KINDS:
        raise web.HTTPNotFound(text=f"no event path {kind!r}")
    try:
        post = event_sync.parse(kind, await request.read())
    except event_sync.EventSyncError as exc:
        raise _refuse(web.HTTPBadRequest, str(exc)) from None
    recorded = await request.app[captions_key].meetings.record(post)
    body: dict[str, object] = {"event": post.event_name, "recorded": recorded}
    if recorded:
        body.update(meeting_id=post.meeting_key, room=post.room_key)
    else:
        body["why"] = (
            "no meeting id or endpoint id in this post (stock event_sync sends neither); "
            "mod_plenary_occupants posts them"
        )
    return web.json_response(body, status=202)
