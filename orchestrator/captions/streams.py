"""Live streams: SSE (``/r/<room>/captions/stream``) and plain text (``captions.txt``).

Both subscribe to the room *before* reading the stored backlog, then skip live
captions already sent, so a caption stored in between is neither lost nor repeated.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from aiohttp import web

from orchestrator import metrics
from orchestrator.captions.api import after_param
from orchestrator.captions.model import Caption
from orchestrator.captions.readers import admit
from orchestrator.captions.service import Captions, captions_key, main_room

PAGE = 500
RETRY = b"retry: 2000\n\n"


async def sse(request: web.Request) -> web.StreamResponse:
    """Event id = caption number; ``?partials=1`` adds live partials (no id)."""
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

    def end(reason: str) -> bytes:
        return f"event: end\ndata: {json.dumps({'reason': reason})}\n\n".encode()

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
    """``[HH:MM:SS] <Speaker> text`` per line, as each caption comes (``curl -N``)."""
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
    await _relay(
        request,
        response,
        captions,
        after,
        kind="text",
        partials=False,
        encode=lambda c: c.line,
        heartbeat=None,
        end=lambda reason: f"-- {reason}\n".encode(),
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
    encode: Callable[[Caption], bytes],
    heartbeat: bytes | None,
    end: Callable[[str], bytes],
) -> None:
    room = request.match_info["room"]
    sent = metrics.TEXT_SENT_BYTES.labels(kind=kind)  # payload bytes, not HTTP framing
    subscribers = metrics.TEXT_SUBSCRIBERS.labels(kind=kind)

    async def write(data: bytes) -> None:
        await response.write(data)
        sent.inc(len(data))

    sub = captions.hub.subscribe(room, partials)
    subscribers.inc()  # the finally below always takes it back, however the reader left
    last = after
    try:
        while True:
            page = await captions.after(room, last, PAGE)
            if page:
                await write(b"".join(encode(c) for c in page))
                last = page[-1].seq
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
                await write(end(sub.reason))
                break
            if caption.is_final:
                if caption.seq <= last:
                    continue
                last = caption.seq
            await write(encode(caption))
    except ConnectionError:
        pass  # the reader went away; it resumes from its last id
    finally:
        sub.close()
        subscribers.dec()
