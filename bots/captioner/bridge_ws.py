"""The Jitsi videobridge's transcription endpoint (``/transcribe``, docs/protocols.md §1b).

One websocket per meeting carries every participant's Opus packets as MediaJson;
bridge_session.py handles a meeting's frames and results, bridge_participant.py one
participant's audio, bridge_bounds.py what a hostile bridge can cost. Every caption
reaches the captioner's bus, and from it the orchestrator, with the meeting id and the
speaker's endpoint id.

Sessions outlive their socket for ``bridge_resume_seconds``: the bridge reconnects
with the same ``sessionId`` after a drop and finds its speakers, recognizers and
unsent results where it left them.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from aiohttp import web

from bots.captioner import mediajson as mj
from bots.captioner.bridge_session import BridgeSession
from bots.captioner.captioner_keys import captioner_bus_key, captioner_settings_key, engine_key
from bots.captioner.engine import Engine
from bots.captioner.stream import EventSink
from bots.captioner.vosk_models import ModelError
from plenary.settings import CaptionerSettings

log = logging.getLogger(__name__)


class SessionRegistry:
    """Bridge sessions by sessionId, kept ``bridge_resume_seconds`` after their socket closes."""

    def __init__(self) -> None:
        self.sessions: dict[str, BridgeSession] = {}
        self._expiry: dict[str, asyncio.TimerHandle] = {}
        self._closing: set[asyncio.Task[Any]] = set()

    def attach(
        self,
        engine: Engine,
        settings: CaptionerSettings,
        query: mj.Query,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport | None,
        publish: EventSink,
    ) -> BridgeSession:
        sid = query.session_id or f"anonymous-{uuid.uuid4()}"
        session = self.sessions.get(sid)
        if session is None or session.ended:
            language = _language(engine, settings, query.language)
            session = BridgeSession(engine, settings, sid, language, publish, query.room)
            self.sessions[sid] = session
            log.info("session %s: new (%s)", sid, session.language)
        else:
            handle = self._expiry.pop(sid, None)
            if handle is not None:
                handle.cancel()
            if session.ws is None:
                log.info("session %s: resumed", sid)
            else:
                log.info("session %s: a newer connection takes over", sid)
        old = session.attach(ws, transport, query)
        if old is not None:
            self._spawn(old.close(code=1000, message=b"replaced by a newer connection"))
        return session

    def detach(self, session: BridgeSession, ws: web.WebSocketResponse) -> None:
        if not session.detach(ws):
            return  # a newer socket already took over
        keep = session.settings.bridge_resume_seconds
        if session.ended or session.id.startswith("anonymous-") or keep <= 0:
            self._expire(session)
            return
        loop = asyncio.get_running_loop()
        self._expiry[session.id] = loop.call_later(keep, self._expire, session)

    def _expire(self, session: BridgeSession) -> None:
        self._expiry.pop(session.id, None)
        if session.ws is not None:
            return
        if self.sessions.get(session.id) is session:
            del self.sessions[session.id]
        log.info("session %s: closed", session.id)
        self._spawn(session.close())

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        for handle in self._expiry.values():
            handle.cancel()
        self._expiry.clear()
        sessions = list(self.sessions.values())
        self.sessions.clear()
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
        if self._closing:
            await asyncio.wait(self._closing, timeout=5.0)


bridge_sessions_key = web.AppKey("bridge_sessions", SessionRegistry)


async def bridge_sessions_ctx(app: web.Application) -> AsyncIterator[None]:
    app[bridge_sessions_key] = SessionRegistry()
    yield
    await app[bridge_sessions_key].close()


def _language(engine: Engine, settings: CaptionerSettings, requested: str | None) -> str:
    """The hint if a model serves it ("ko", or "ko-KR" → "ko"), else the default language."""
    default = settings.default_language
    for candidate in (requested, (requested or "").split("-")[0].lower()):
        if not candidate:
            continue
        try:
            engine.models.path(candidate)
        except ModelError:
            continue
        return candidate
    if requested:
        log.warning("no model for language %r; transcribing as %r", requested, default)
    return default


async def bridge_stream(request: web.Request) -> web.StreamResponse:
    settings = request.app[captioner_settings_key].captioner
    ws = web.WebSocketResponse(max_msg_size=settings.bridge_max_frame_bytes)
    if not ws.can_prepare(request).ok:
        raise web.HTTPBadRequest(
            text="This is Plenary's captioner: point Jicofo's transcription url-template "
            "(jicofo.transcription.url-template) at this URL.\n"
        )
    query = mj.parse_query(request.query, request.query.getall("tag", []))
    await ws.prepare(request)
    registry = request.app[bridge_sessions_key]
    engine = request.app[engine_key]
    full = engine.full_reason()
    if full and query.session_id not in registry.sessions:
        # A new meeting on a full captioner: refused at once (1013, try again later) so a
        # load balancer's retry or the videobridge's next attempt goes elsewhere. A
        # meeting this captioner already holds may still reconnect to it.
        log.warning("new bridge session %s refused: %s", query.session_id, full)
        await ws.close(code=1013, message=full.encode()[:120])
        return ws
    session = registry.attach(
        request.app[engine_key],
        settings,
        query,
        ws,
        request.transport,
        request.app[captioner_bus_key].publish,
    )
    try:
        await session.receive(ws)
    finally:
        registry.detach(session, ws)
    return ws
