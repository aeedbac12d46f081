"""``POST /api/v1/events/<room|occupant>/<…>``: Prosody's meeting and occupant posts.

Senders: jitsi-contrib's event_sync component (``api_prefix`` = ``https://<plenary>/api/v1``)
and Plenary's mod_plenary_occupants (deploy/prosody/). Both send
``Authorization: Bearer <captions.event_sync_secret>``. Answers come quickly: one
small write, then 202 (event_sync retries on 5xx only).
"""

from __future__ import annotations

from aiohttp import web

from orchestrator.captions import event_sync
from orchestrator.captions.service import captions_key
from orchestrator.problems import check_bearer, problem

PATH = "/api/v1/events/{kind:(?:room|occupant)/[a-z]+}"


def _authorize(request: web.Request) -> None:
    expected = request.app[captions_key].settings.event_sync_secret
    check_bearer(request, {"prosody": expected}, "Prosody event posts",
                 "captions.event_sync_secret")  # fmt: skip


async def post_event(request: web.Request) -> web.Response:
    _authorize(request)
    kind = request.match_info["kind"]
    if kind not in event_sync.KINDS:
        raise problem(404, f"no event path {kind!r}")
    try:
        post = event_sync.parse(kind, await request.read())
    except event_sync.EventSyncError as exc:
        raise problem(400, str(exc)) from None
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
