"""The vosk-server-compatible websocket endpoint (path ``/``).

Jigasi, BigBlueButton's mod_audio_fork and vosk-server's own clients connect here
unchanged. Optional query parameters ``room``, ``speaker`` and ``lang`` attribute
the stream; without them it belongs to the default room.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from aiohttp import WSMsgType, web

from bots.captioner import vosk_protocol as vp
from bots.captioner.admission import Refused
from bots.captioner.captioner_keys import captioner_bus_key, engine_key
from bots.captioner.engine import StreamLease
from bots.captioner.stream import EventSink, FeedResult, StreamTranscriber
from bots.captioner.vosk_models import ModelError
from plenary.settings import CaptionerSettings

log = logging.getLogger(__name__)


async def vosk_stream(request: web.Request) -> web.StreamResponse:
    engine = request.app[engine_key]
    settings = engine.settings
    ws = VoskSocket(settings.max_frame_bytes)
    if not ws.can_prepare(request).ok:
        raise web.HTTPBadRequest(
            text="This is Plenary's captioner: connect a vosk-protocol websocket client "
            "(Jigasi, BigBlueButton, vosk-server's test.py) to this URL.\n"
        )
    await ws.prepare(request)
    try:
        lease = engine.open_stream("vosk")
    except Refused as exc:
        log.warning("refusing stream from %s: %s", request.remote, exc)
        await _close(ws, vp.CLOSE_TRY_AGAIN, str(exc))
        return ws
    session = VoskSession(
        lease,
        settings,
        language=request.query.get("lang") or settings.default_language,
        room=request.query.get("room") or settings.default_room,
        speaker=request.query.get("speaker") or f"speaker-{id(ws) % 10000}",
        bus_publish=request.app[captioner_bus_key].publish,
    )
    try:
        try:
            engine.models.path(session.language)
        except ModelError as exc:
            await _close(ws, vp.CLOSE_POLICY, str(exc))
            return ws
        await session.run(ws)
    finally:
        # Shielded: a second cancellation (server shutdown) must not keep the
        # recognizer from going back to the pool, nor the stream from being released.
        await asyncio.shield(session.close())
    return ws


class VoskSocket(web.WebSocketResponse):
    """A websocket whose every close says why.

    aiohttp closes the socket itself when a frame breaks the rules (too big, text
    that is not UTF-8, broken framing) and sends no reason; clients log the reason,
    so one is filled in from the close code.
    """

    def __init__(self, max_frame_bytes: int) -> None:
        # aiohttp refuses a frame of exactly max_msg_size bytes; max_frame_bytes is
        # the largest frame accepted.
        # Heartbeat pings find peers that vanished without a close (Jigasi's Jetty
        # client answers pings by itself), long before the idle timeout would.
        super().__init__(max_msg_size=max_frame_bytes + 1, autoping=True, heartbeat=30.0)
        self._reasons = {
            vp.CLOSE_TOO_BIG: f"frame larger than {max_frame_bytes} bytes "
            "(captioner.max_frame_bytes)",
            vp.CLOSE_INVALID: "text frame is not valid UTF-8",
            vp.CLOSE_PROTOCOL: "broken websocket framing",
        }

    async def close(
        self, *, code: int = vp.CLOSE_NORMAL, message: bytes = b"", drain: bool = True
    ) -> bool:
        if not message and code in self._reasons:
            message = vp.close_reason(self._reasons[code])
        return await super().close(code=code, message=message, drain=drain)


class VoskSession:
    """One websocket's state: its stream, the latest config and, once audio arrives, a
    transcriber (the stream's lease holds it)."""

    def __init__(
        self,
        lease: StreamLease,
        settings: CaptionerSettings,
        *,
        language: str,
        room: str,
        speaker: str,
        bus_publish: EventSink,
    ) -> None:
        self._lease = lease
        self._settings = settings
        self.language = language
        self.room = room
        self.speaker = speaker
        self._publish = bus_publish
        self.config = vp.Config()
        self._busy: asyncio.Future[FeedResult] | None = None

    async def run(self, ws: web.WebSocketResponse) -> None:
        """Answer frames until the client sends eof, goes away or breaks the protocol."""
        idle = self._settings.idle_timeout
        while True:
            try:
                msg = await ws.receive(timeout=idle)
            except TimeoutError:
                await self._finish(ws, vp.CLOSE_POLICY, f"idle: no frame for {idle:g} s")
                return
            try:
                if msg.type == WSMsgType.BINARY:
                    await ws.send_str(await self.audio(msg.data))
                elif msg.type == WSMsgType.TEXT:
                    reply, done = await self.text(msg.data)
                    if reply is not None:
                        await ws.send_str(reply)
                    if done:
                        await ws.close()
                        return
                else:
                    # CLOSE, CLOSING, CLOSED: the client went away. ERROR: a frame broke
                    # the rules and aiohttp has already closed (VoskSocket gave the reason).
                    if msg.type == WSMsgType.ERROR:
                        log.info("stream %s/%s: %s", self.room, self.speaker, msg.data)
                    await self._flush()
                    return
            except vp.ProtocolError as exc:
                log.info("stream %s/%s: protocol error: %s", self.room, self.speaker, exc)
                await self._finish(ws, exc.code, exc.reason)
                return
            except ModelError as exc:
                log.error("stream %s/%s: %s", self.room, self.speaker, exc)
                await self._finish(ws, vp.CLOSE_INTERNAL, str(exc))
                return
            except ConnectionResetError:
                await self._flush()
                return
            except Exception:
                # A bug of ours must cost this stream only, never the process.
                log.exception("stream %s/%s failed", self.room, self.speaker)
                await _close(ws, vp.CLOSE_INTERNAL, "internal error; see the captioner's log")
                return

    async def audio(self, data: bytes) -> str:
        if len(data) % 2:
            raise vp.ProtocolError(
                vp.CLOSE_UNSUPPORTED,
                f"binary frame of {len(data)} bytes is not whole 16-bit samples",
            )
        result = await self._call(self._transcriber().feed(data))
        if result.finals:
            return vp.final_reply([f.result for f in result.finals], words=bool(self.config.words))
        if result.partial is not None:
            return vp.partial_reply(result.partial)
        return vp.empty_reply()

    async def text(self, data: str) -> tuple[str | None, bool]:
        """Handle a text frame; returns (reply or None, close afterwards)."""
        message = vp.parse_text_frame(data)
        if isinstance(message, vp.Config):
            await self._configure(message)
            return None, False
        result = await self._flush()
        reply = vp.final_reply([f.result for f in result.finals], words=bool(self.config.words))
        return reply, isinstance(message, vp.Eof)

    async def close(self) -> None:
        """Give the recognizer back without a result and release the stream (it is over)."""
        if self._busy is not None:
            # A cancelled handler leaves its decode running on a worker thread;
            # closing the transcriber under it would use one recognizer from two
            # threads at once, which aborts the whole process inside Kaldi.
            await asyncio.gather(self._busy, return_exceptions=True)
        await self._lease.close()

    async def _call(self, work: Coroutine[Any, Any, FeedResult]) -> FeedResult:
        """Run one transcriber call to completion even if this handler is cancelled."""
        self._busy = asyncio.ensure_future(work)
        return await asyncio.shield(self._busy)

    async def _configure(self, config: vp.Config) -> None:
        old = self.config
        new = vp.Config(
            sample_rate=config.sample_rate or old.sample_rate,
            words=old.words if config.words is None else config.words,
            max_alternatives=(
                old.max_alternatives if config.max_alternatives is None else config.max_alternatives
            ),
            phrase_list=old.phrase_list if config.phrase_list is None else config.phrase_list,
        )
        self.config = new
        recognizer_changed = (new.sample_rate, new.max_alternatives, new.phrase_list) != (
            old.sample_rate,
            old.max_alternatives,
            old.phrase_list,
        )
        if self._lease.transcriber is not None and recognizer_changed:
            # A new config mid-stream: finish what was said under the old one first
            # (its final reaches the room; the protocol has no reply to a config).
            await self._flush()
            await self._lease.close_transcriber()

    def _transcriber(self) -> StreamTranscriber:
        transcriber = self._lease.transcriber
        if transcriber is None:
            rate = self.config.sample_rate
            if rate is None:
                rate = self._settings.default_sample_rate
                log.warning(
                    "stream %s/%s sent audio before a config frame; assuming %d Hz "
                    "(captioner.default_sample_rate)",
                    self.room,
                    self.speaker,
                    rate,
                )
            transcriber = self._lease.open_transcriber(
                sample_rate=rate,
                language=self.language,
                room=self.room,
                speaker=self.speaker,
                max_alternatives=self.config.max_alternatives or 0,
                phrase_list=self.config.phrase_list,
                sink=self._publish,
            )
        return transcriber

    async def _flush(self) -> FeedResult:
        if self._lease.transcriber is None:
            return FeedResult()
        return await self._call(self._lease.transcriber.flush())

    async def _finish(self, ws: web.WebSocketResponse, code: int, reason: str) -> None:
        """Close with a reason, keeping what was already said (its final still reaches the room)."""
        try:
            await self._flush()
        finally:
            await _close(ws, code, reason)


async def _close(ws: web.WebSocketResponse, code: int, reason: str) -> None:
    await ws.close(code=code, message=vp.close_reason(reason))
