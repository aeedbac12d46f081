"""The join flow: POST /r/<slug>/join → logged in? open? policy → JWT → Jitsi.

Every answer is logged with who, which room and why, and counted.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from urllib.parse import quote

from aiohttp import web

from orchestrator import metrics
from orchestrator.access.jitsi_jwt import TokenError, join_url, mint
from orchestrator.access.policy import decide
from orchestrator.app_keys import settings_key
from orchestrator.rooms.api import repository
from orchestrator.rooms.policy import access_policy
from orchestrator.rooms.repository import RoomNotFound
from orchestrator.web.pages import page, room_facts, viewer_zone, whom_to_ask
from orchestrator.web.sessions import current_identity
from orchestrator.web.web_keys import wiki_key

log = logging.getLogger(__name__)


async def join(request: web.Request) -> web.Response:
    slug = request.match_info["slug"]
    try:
        room = await repository(request).get(slug)
    except RoomNotFound as exc:
        raise web.HTTPNotFound(text="No such room.") from exc
    form = await request.post()
    low = form.get("mode") == "low" and room.low_bandwidth
    who = await current_identity(request)
    if who is None:
        log.info("join %s: not logged in, sent to login", slug)
        raise web.HTTPSeeOther(f"/login?next={quote(f'/r/{slug}', safe='/')}")
    name = f"{who.source}:{who.username or who.user_id}"
    settings = request.app[settings_key]
    tz, _ = await viewer_zone(request)
    facts = room_facts(room, tz, datetime.now(UTC), settings.orchestrator.join_early_minutes)
    context = {"room": room, "facts": facts, "ask": whom_to_ask(room)}
    if not facts["open"]:
        log.info("access closed: %s to room %s: not open (next: %s)", name, slug,
                 facts["next"] and facts["next"]["iso"])  # fmt: skip
        metrics.ATTENDEES_DENIED.labels(reason="room_closed").inc()
        return await page(request, "closed.html", context, status=403)
    decision = await decide(access_policy(room.policy), who, request.app.get(wiki_key), room=slug)
    if not decision.allowed:
        metrics.ATTENDEES_DENIED.labels(reason=decision.outcome).inc()
        status = 503 if decision.outcome == "unavailable" else 403
        return await page(request, "denied.html", {**context, "decision": decision}, status)
    try:
        token = mint(settings.jitsi, room=slug, identity=who, moderator=decision.moderator)
        url = join_url(settings.jitsi, slug, token, low_bandwidth=low)
    except TokenError as exc:
        log.error("join %s for %s impossible: %s", slug, name, exc)
        return await page(
            request,
            "error.html",
            {"heading": "Video rooms are not set up yet",
             "message": "Plenary cannot issue Jitsi tokens on this server yet. "
                        "Tell the event's organizers; you can still follow the captions."},
            status=503,
        )  # fmt: skip
    metrics.JWTS_ISSUED.inc()
    metrics.ATTENDEES_ADMITTED.labels(source=who.source).inc()
    log.info("join %s: %s as %s (%s)%s", slug, name,
             "moderator" if decision.moderator else "member", decision.rule,
             " low-bandwidth" if low else "")  # fmt: skip
    raise web.HTTPSeeOther(url)
