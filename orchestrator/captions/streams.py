"""Live streams: SSE (``/r/<room>/captions/stream``) and plain text (``captions.txt``).

Both subscribe to the room *before* reading the stored backlog, then skip live
captions already sent, so a caption stored in between is neither lost nor repeated.
A reader that closes its connection is let go within about a second (fanout.WATCH_SECONDS),
caption or not, so ``plenary_text_subscribers`` counts open streams. Opening a stream
(access check, subscription, first backlog page) is made cheap for reconnect bursts and
answered 503 + Retry-After when the node is too busy (captions/opening.py).

The text stream is for people with ``curl -N``: a first line names the room and its time
zone, each caption is ``[2026-11-28T10:04:05+09:00] <Speaker> text`` (ISO 8601 in the
room's zone, with its offset), and lines that are not captions start with ``-- ``; the
last one says why the stream stopped and the command that goes on from there.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from orchestrator import metrics
from orchestrator.app_keys import settings_key
from orchestrator.captions.api import after_param
from orchestrator.captions.model import Caption, Correction, Item
from orchestrator.captions.opening import Busy, Opening, busy_response, opening_for
from orchestrator.captions.present import room_view
from orchestrator.captions.readers import admit
from orchestrator.captions.service import Captions, captions_key, is_final, main_room
from orchestrator.rooms.policy import CaptionPolicy
from plenary.fanout import Subscription

PAGE = 500
RETRY = b"retry: 2000\n\n"


@dataclass
class Opened:
    """A stream admitted and subscribed, with its first page of backlog."""

    sub: Subscription[Item]
    after: int
    first: list[Item]
    kind: str

    def close(self) -> None:
        self.sub.close()
        metrics.TEXT_SUBSCRIBERS.labels(kind=self.kind).dec()


async def sse(request: web.Request) -> web.StreamResponse:
    """Event id = stream position: a caption's number, a correction's own number (event
    ``correction``, docs/corrections.md); ``?partials=1`` adds live partials (no id)."""
    captions = request.app[captions_key]
    partials = request.query.get("partials") == "1"
    opened = await _open(request, captions, "sse", partials, lambda last: last)
    try:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache, no-transform",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        await response.write(RETRY)
        metrics.TEXT_SENT_BYTES.labels(kind="sse").inc(len(RETRY))

        def end(sub: Subscription[Item], last: int) -> bytes:
            return f"event: end\ndata: {json.dumps({'reason': sub.reason})}\n\n".encode()

        await _relay(
            request,
            response,
            captions,
            opened,
            encode=lambda c: c.sse,
            heartbeat=b": keepalive\n\n",
            end=end,
        )
    finally:
        opened.close()
    return response


async def text(request: web.Request) -> web.StreamResponse:
    """``[2026-11-28T10:04:05+09:00] <Speaker> text`` per line, as each caption comes."""
    captions = request.app[captions_key]
    room = request.match_info["room"]
    backlog = captions.settings.text_backlog
    opened = await _open(request, captions, "text", False, lambda last: max(0, last - backlog))
    try:
        try:
            async with opening_for(captions.store.db).slot():
                view = await room_view(captions, room)
        except Busy:
            raise busy_response("streams") from None
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/plain; charset=utf-8",
                "Cache-Control": "no-cache, no-transform",
                "X-Accel-Buffering": "no",
            }
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        hello = f"-- Live captions of {view.title}; times are {view.zone_label()}.\n".encode()
        await response.write(hello)
        metrics.TEXT_SENT_BYTES.labels(kind="text").inc(len(hello))

        def end(sub: Subscription[Item], last: int) -> bytes:
            why = (
                "the server is restarting"
                if sub.shutdown
                else "this connection fell too far behind the captions"
            )
            base = request.app[settings_key].orchestrator.public_url.rstrip("/")
            again = base + str(request.rel_url.update_query(after=str(last)))
            return f"-- Stopped: {why}. To go on from here, run: curl -N '{again}'\n".encode()

        await _relay(
            request,
            response,
            captions,
            opened,
            encode=lambda c: view.text_line(c) if isinstance(c, Caption) else _fixed(view.iso, c),
            heartbeat=None,
            end=end,
        )
    finally:
        opened.close()
    return response


async def _open(
    request: web.Request,
    captions: Captions,
    kind: str,
    partials: bool,
    start: Callable[[int], int],
) -> Opened:
    """Admit the reader, subscribe, then read the first page of what it is owed, within
    one opening slot (captions/opening.py); 503 + Retry-After when the node is too busy.
    ``start``: where a reader without Last-Event-ID/``after`` begins, from the room's
    last number."""
    room = request.match_info["room"]
    opening = opening_for(captions.store.db)
    after = after_param(request)

    def alive() -> bool:
        transport = request.transport
        return transport is not None and not transport.is_closing()

    try:
        async with opening.slot():
            await admit(request, main_room(room))
            if after is None:
                after = start(await captions.store.last_seq(room))
        sub = captions.hub.subscribe(room, want=None if partials else is_final, alive=alive)
        try:  # subscribed first: what is stored meanwhile comes live, or in the backlog
            first = await _backlog(captions, opening, room, after)
        except BaseException:
            sub.close()
            raise
    except Busy:
        raise busy_response("streams") from None
    metrics.TEXT_SUBSCRIBERS.labels(kind=kind).inc()  # Opened.close takes it back
    return Opened(sub, after, first, kind)


async def _backlog(captions: Captions, opening: Opening, room: str, after: int) -> list[Item]:
    """A page of what a subscribed reader is owed after ``after``: one read, shared with
    the room's other new readers, for a room that keeps its transcript."""
    found = await opening.room(main_room(room))
    if found is not None:
        known = found.caption_policy
    else:  # only kept with captions.accept_unknown_rooms
        known = CaptionPolicy("keep", captions.settings.retention_days)
    policy = await captions.policy(room, known)
    if policy.keeps_transcript:
        return await opening.backlog(room, after, PAGE)
    return await captions.stream_after(room, after, PAGE)  # memory, asks the rooms again


async def _relay(
    request: web.Request,
    response: web.StreamResponse,
    captions: Captions,
    opened: Opened,
    *,
    encode: Callable[[Item], bytes],
    heartbeat: bytes | None,
    end: Callable[[Subscription[Item], int], bytes],
) -> None:
    room = request.match_info["room"]
    sent = metrics.TEXT_SENT_BYTES.labels(kind=opened.kind)  # payload, not HTTP framing
    opening = opening_for(captions.store.db)
    sub = opened.sub

    async def write(data: bytes) -> None:
        await response.write(data)
        sent.inc(len(data))

    last = opened.after
    page = opened.first
    try:
        while True:
            if page:
                await write(b"".join(encode(c) for c in page))
                last = page[-1].position
            if len(page) < PAGE:
                break
            page = await _backlog(captions, opening, room, last)
        while True:
            try:
                async with asyncio.timeout(captions.settings.heartbeat_seconds):
                    caption = await sub.next()
            except TimeoutError:
                if heartbeat is not None:
                    await write(heartbeat)
                continue
            if caption is None:
                if not sub.gone:
                    await write(end(sub, last))
                break
            if caption.is_final:
                if caption.position <= last:
                    continue
                last = caption.position
            await write(encode(caption))
    except ConnectionError:
        pass  # the reader went away; it resumes from its last id
    except Busy:
        pass  # a long backlog and a busy node: the reader reconnects from its last id


def _fixed(iso: Callable[[int], str], fix: Correction) -> bytes:
    """A correction in ``captions.txt``: ``[time] * correction: <Speaker> new text``."""
    return f"[{iso(fix.at_ms)}] {fix.irc}\n".encode()
