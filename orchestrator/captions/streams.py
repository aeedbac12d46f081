"""Live streams: SSE (``/r/<room>/captions/stream``) and plain text (``captions.txt``).

Both subscribe to the room *before* reading the stored backlog, then skip live
captions already sent, so a caption stored in between is neither lost nor repeated.
A reader that closes its connection is let go within about a second (fanout.WATCH_SECONDS),
caption or not, so ``plenary_text_subscribers`` counts open streams.

The text stream is for people with ``curl -N``: a first line names the room and its time
zone, each caption is ``[2026-11-28T10:04:05+09:00] <Speaker> text`` (ISO 8601 in the
room's zone, with its offset), and lines that are not captions start with ``-- ``; the
last one says why the stream stopped and the command that goes on from there.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from aiohttp import web

from orchestrator import metrics
from orchestrator.app_keys import settings_key
from orchestrator.captions.api import after_param
from orchestrator.captions.model import Caption, Correction, Item
from orchestrator.captions.present import room_view
from orchestrator.captions.readers import admit
from orchestrator.captions.service import Captions, captions_key, is_final, main_room
from plenary.fanout import Subscription

PAGE = 500
RETRY = b"retry: 2000\n\n"


async def sse(request: web.Request) -> web.StreamResponse:
    """Event id = stream position: a caption's number, a correction's own number (event
    ``correction``, docs/corrections.md); ``?partials=1`` adds live partials (no id)."""
    await admit(request, main_room(request.match_info["room"]))
    captions = request.app[captions_key]
    after = after_param(request)
    if after is None:
        after = await captions.store.last_seq(request.match_info["room"])
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
        after,
        kind="sse",
        partials=request.query.get("partials") == "1",
        encode=lambda c: c.sse,
        heartbeat=b": keepalive\n\n",
        end=end,
    )
    return response


async def text(request: web.Request) -> web.StreamResponse:
    """``[2026-11-28T10:04:05+09:00] <Speaker> text`` per line, as each caption comes."""
    await admit(request, main_room(request.match_info["room"]))
    captions = request.app[captions_key]
    room = request.match_info["room"]
    after = after_param(request)
    if after is None:
        after = max(0, await captions.store.last_seq(room) - captions.settings.text_backlog)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/plain; charset=utf-8",
            "Cache-Control": "no-cache, no-transform",
            "X-Accel-Buffering": "no",
        }
    )
    response.enable_chunked_encoding()
    await response.prepare(request)
    view = await room_view(captions, room)
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
        after,
        kind="text",
        partials=False,
        encode=lambda c: view.text_line(c) if isinstance(c, Caption) else _fixed(view.iso, c),
        heartbeat=None,
        end=end,
    )
    return response


async def _relay(
    request: web.Request,
    response: web.StreamResponse,
    captions: Captions,
    after: int,
    *,
    kind: str,
    partials: bool,
    encode: Callable[[Item], bytes],
    heartbeat: bytes | None,
    end: Callable[[Subscription[Item], int], bytes],
) -> None:
    room = request.match_info["room"]
    sent = metrics.TEXT_SENT_BYTES.labels(kind=kind)  # payload bytes, not HTTP framing
    subscribers = metrics.TEXT_SUBSCRIBERS.labels(kind=kind)

    async def write(data: bytes) -> None:
        await response.write(data)
        sent.inc(len(data))

    def alive() -> bool:
        transport = request.transport
        return transport is not None and not transport.is_closing()

    sub = captions.hub.subscribe(room, want=None if partials else is_final, alive=alive)
    subscribers.inc()  # the finally below always takes it back, however the reader left
    last = after
    try:
        while True:
            page = await captions.stream_after(room, last, PAGE)
            if page:
                await write(b"".join(encode(c) for c in page))
                last = page[-1].position
            if len(page) < PAGE:
                break
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
    finally:
        sub.close()
        subscribers.dec()


def _fixed(iso: Callable[[int], str], fix: Correction) -> bytes:
    """A correction in ``captions.txt``: ``[time] * correction: <Speaker> new text``."""
    return f"[{iso(fix.at_ms)}] {fix.irc}\n".encode()
