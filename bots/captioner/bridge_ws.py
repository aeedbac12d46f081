"""The Jitsi videobridge's transcription endpoint (``/transcribe``, docs/protocols.md §1b).

One websocket per meeting carries every participant's Opus packets as MediaJson.
The receive loop never waits for recognition: it parses a frame, answers a ping at
once, and hands packets to the source's queue; a task per source decodes them in
batches and feeds its ``StreamTranscriber``. A ticker per session notices sources
that went quiet (the bridge stops sending in silence) and flushes them, so the final
comes ``bridge_quiet_ms`` after the last packet. Results go back over the socket
(when asked for) through one writer, and every caption reaches the captioner's bus, and
from it the orchestrator, with the meeting id and the speaker's endpoint id.

Sessions outlive their socket for ``bridge_resume_seconds``: the bridge reconnects
with the same ``sessionId`` after a drop and finds its speakers, recognizers and
unsent results where it left them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import replace
from typing import Any

from aiohttp import WSMsgType, web

from bots.captioner import mediajson as mj
from bots.captioner import metrics, opus
from bots.captioner.captioner_keys import captioner_bus_key, captioner_settings_key, engine_key
from bots.captioner.engine import Engine, EventSink, Refused, Slot, StreamTranscriber
from bots.captioner.models import ModelError
from plenary.events import CaptionEvent
from plenary.settings import CaptionerSettings

log = logging.getLogger(__name__)

TICK = 0.05  # how often a session looks for quiet sources
REORDER_WAIT = 0.06  # a held packet waits this long for a missing one when nothing follows
QUEUE_PACKETS = 500  # 10 s of audio per source; beyond it the source is behind and loses packets
MAX_ERRORS = 50  # consecutive undecodable packets (1 s) before a source is refused
CAUGHT_UP = 25  # queued packets (0.5 s) of a source that is keeping up with its speaker
MOSTLY_BAD = 25  # after this many packets, a source with more bad than good is refused
VOICE_HOLD = 2.0  # after a voiced packet, silence is fed at once so the utterance can end
STUCK_WRITER = 30.0  # seconds a send may block (peer not reading) before the socket is dropped
FLUSH = "flush"
STOP = "stop"

Op = opus.Step | str


class LogLimiter:
    """At most one line per key per ``every`` seconds, saying how many were held back."""

    def __init__(self, every: float = 10.0) -> None:
        self._every = every
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -self._every) < self._every:
            self._held[key] = self._held.get(key, 0) + 1
            return
        held = self._held.pop(key, 0)
        self._last[key] = now
        suffix = f" (and {held} more like it)" if held else ""
        log.warning(message + suffix, *args)


class Outbox:
    """Results waiting for the socket; pongs jump the queue. Bounded: a peer that stops
    reading loses its oldest results, never the captioner's memory."""

    def __init__(self, limit: int = 1000) -> None:
        self._items: deque[str] = deque()
        self._urgent: deque[str] = deque(maxlen=16)
        self._limit = limit
        self._ready = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self.dropped = 0
        self.sending_since: float | None = None

    def put(self, text: str, *, urgent: bool = False) -> None:
        if urgent:
            self._urgent.append(text)
        else:
            if len(self._items) >= self._limit:
                self._items.popleft()
                self.dropped += 1
            self._items.append(text)
        self._ready.set()
        self._empty.clear()

    def clear_urgent(self) -> None:
        self._urgent.clear()

    def __len__(self) -> int:
        return len(self._items) + len(self._urgent)

    async def pump(self, ws: web.WebSocketResponse, current: Callable[[], bool]) -> None:
        """Send until the socket is no longer the session's (one pump per socket)."""
        while current():
            await self._ready.wait()
            while current() and (self._urgent or self._items):
                text = self._urgent.popleft() if self._urgent else self._items.popleft()
                self.sending_since = time.monotonic()
                await ws.send_str(text)
                self.sending_since = None
            if not (self._urgent or self._items):
                self._ready.clear()
                self._empty.set()

    async def sent(self) -> None:
        """Wait until everything queued has been written."""
        await self._empty.wait()


class Source:
    """One audio source (tag): its jitter buffer, decoder, queue, task and transcriber."""

    def __init__(self, session: BridgeSession, tag: str, endpoint: str, slot: Slot) -> None:
        self.session = session
        self.slot = slot  # released by the task, once the transcriber is closed
        self.tag = tag
        self.endpoint = endpoint
        self.label = session.label_for(endpoint)
        self.jitter = opus.JitterBuffer()
        self.decoder = opus.OpusSource()
        self.transcriber: StreamTranscriber = session.engine.open_stream(
            sample_rate=opus.RATE,
            language=session.language,
            room=session.room,
            speaker=self.label,
            sink=self._on_event,
        )
        self.queue: asyncio.Queue[Op] = asyncio.Queue(QUEUE_PACKETS)
        self.last_packet = time.monotonic()
        self.last_voice = -VOICE_HOLD
        self.needs_flush = False
        self.pending_silence = 0
        self.errors = 0  # consecutive
        self.packets = 0
        self.bad_packets = 0
        self.stopping = False
        self.overflowed = 0
        self.fed_seconds = 0.0
        self.task = asyncio.create_task(self._run(), name=f"bridge source {tag}")

    # --- on the receive loop: cheap, never awaits ---

    def accept(self, media: mj.Media) -> None:
        now = time.monotonic()
        self.last_packet = now
        self.packets += 1
        try:
            data = mj.decode_payload(media)
        except mj.FrameError as exc:
            self.bad_packet(str(exc), "base64")
            return
        # Garbage never reaches libopus, which would make noise of it (and noise words).
        if invalid := opus.invalid_packet(data):
            self.bad_packet(f"invalid Opus packet ({invalid}, {len(data)} bytes)", invalid)
            return
        silent = mj.is_silent(media)
        if not silent:
            self.last_voice = now
        for step in self.jitter.push(opus.Packet(media.chunk, media.timestamp, data, silent)):
            self.put(step)

    def put(self, step: opus.Step) -> None:
        """Queue a step; silence is gathered while nobody is speaking (it costs nothing)."""
        if isinstance(step, opus.Gap) or (isinstance(step, opus.Packet) and step.silent):
            samples = step.samples if isinstance(step, opus.Gap) else opus.packet_samples(step.data)
            self.pending_silence += samples
            speaking = self.transcriber.in_utterance or (
                time.monotonic() - self.last_voice < VOICE_HOLD
            )
            if speaking or self.pending_silence >= opus.RATE:
                self._put(opus.Gap(self.pending_silence))
                self.pending_silence = 0
            return
        if self.pending_silence:
            self._put(opus.Gap(self.pending_silence))
            self.pending_silence = 0
        self.needs_flush = True
        self._put(step)

    def tick(self, now: float, silence_s: float) -> None:
        quiet = now - self.last_packet
        if self.jitter.holding and quiet >= REORDER_WAIT:
            for step in self.jitter.drain():
                self.put(step)
        if self.needs_flush and quiet >= silence_s:
            self.needs_flush = False
            self._put(FLUSH)

    def bad_packet(self, reason: str, kind: str | None = None) -> None:
        if kind is not None:
            metrics.OPUS_REFUSED.labels(reason=kind).inc()
        self.bad_packets += 1
        self.errors += 1
        self.session.limiter.warning(
            f"bad {self.tag}", "session %s tag %s: dropped a packet: %s", self.session.id,
            self.tag, reason,
        )  # fmt: skip
        if self.errors >= MAX_ERRORS:
            self.session.refuse(self.tag, f"{self.errors} undecodable packets in a row ({reason})")
        elif self.packets >= MOSTLY_BAD and self.bad_packets * 2 > self.packets:
            self.session.refuse(
                self.tag, f"{self.bad_packets} of {self.packets} packets undecodable ({reason})"
            )

    def stop(self, *, flush: bool) -> None:
        """End the task. With ``flush`` (a source that kept up: at most 0.5 s queued) its
        queue is decoded and the open utterance gets its final; without, the queued audio
        is dropped at once and decodes waiting for a thread are skipped."""
        if self.stopping:
            return
        self.stopping = True
        if flush:
            self.queue.put_nowait(FLUSH)
            self.queue.put_nowait(STOP)
            return
        self.transcriber.abandon()
        while not self.queue.empty():
            self.queue.get_nowait()
            self.queue.task_done()
        self.queue.put_nowait(STOP)

    def _put(self, op: Op) -> None:
        if self.stopping:
            return
        try:
            self.queue.put_nowait(op)
        except asyncio.QueueFull:
            self.overflowed += 1
            self.session.limiter.warning(
                f"behind {self.tag}", "session %s tag %s: recognition is behind, dropped audio",
                self.session.id, self.tag,
            )  # fmt: skip

    # --- the source's task: decoding and recognition ---

    async def _run(self) -> None:
        try:
            while True:
                ops = [await self.queue.get()]
                while not self.queue.empty() and len(ops) < 50:
                    ops.append(self.queue.get_nowait())
                try:
                    if await self._process(ops):
                        return
                finally:
                    for _ in ops:
                        self.queue.task_done()
        finally:
            # Shielded: a cancelled task still gives its recognizer back before its slot.
            await asyncio.shield(self.transcriber.close())
            self.slot.release()

    async def _process(self, ops: list[Op]) -> bool:
        """Decode and feed a batch; True when the source is to stop."""
        pcm: list[bytes] = []
        for i, op in enumerate(ops):
            if isinstance(op, str):
                await self._feed(pcm)
                pcm = []
                if op == STOP:
                    return True  # _run closes the transcriber: no final (FLUSH asks for one)
                await self.transcriber.flush()
            else:
                following = ops[i + 1] if i + 1 < len(ops) else None
                pcm.append(self._pcm(op, following))
        await self._feed(pcm)
        return False

    def _pcm(self, op: opus.Step, following: Op | None) -> bytes:
        if isinstance(op, opus.Gap):
            return opus.silence(op.samples)
        if isinstance(op, opus.Lost):
            fec = following.data if isinstance(following, opus.Packet) else None
            return self.decoder.conceal(op.count, fec)
        if op.silent:
            return opus.silence(opus.packet_samples(op.data))
        if self.transcriber.abandoned:
            return b""
        try:
            pcm = self.decoder.decode(op.data)
        except opus.OpusError as exc:
            self.bad_packet(f"Opus: {exc}")
            return b""
        metrics.OPUS_DECODED.inc()
        self.errors = 0
        return pcm

    async def _feed(self, pcm: list[bytes]) -> None:
        data = b"".join(pcm)
        if data:
            self.fed_seconds += len(data) / 2 / opus.RATE
            await self.transcriber.feed(data)

    def _on_event(self, event: CaptionEvent) -> None:
        event = replace(event, meeting_id=self.session.id, endpoint=self.endpoint)
        self.session.on_event(self, event)


class BridgeSession:
    """A meeting's transcription: its sources, speaker labels and results to send back."""

    def __init__(
        self,
        engine: Engine,
        settings: CaptionerSettings,
        session_id: str,
        language: str,
        publish: EventSink,
        room: str | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.id = session_id
        # The Plenary room when the URL names one (``&room=``); else "" and the
        # orchestrator maps the meeting id (``sessionId``) to its room.
        self.room = room or ""
        self.language = language
        self.publish = publish
        self.sources: dict[str, Source] = {}
        self.refused: dict[str, str] = {}  # tag → why
        self.labels: dict[str, str] = {}  # endpoint id → "Speaker N"
        self.names: dict[str, str] = {}  # endpoint id → display name, when Plenary knows it
        self.outbox = Outbox()
        self.limiter = LogLimiter()
        self.send_back = False
        self.send_back_interim = False
        self.ws: web.WebSocketResponse | None = None
        self.transport: asyncio.Transport | None = None
        self.ended = False
        self.frames = 0
        # The engine's budget key: unique even when a meeting id comes back.
        self.group = f"bridge {session_id} {uuid.uuid4().hex[:8]}"
        self._ticker = asyncio.create_task(self._tick(), name=f"bridge session {session_id}")

    def label_for(self, endpoint: str) -> str:
        if endpoint in self.names:
            return self.names[endpoint]
        return self.labels.setdefault(endpoint, f"Speaker {len(self.labels) + 1}")

    # --- the receive loop ---

    async def receive(self, ws: web.WebSocketResponse) -> None:
        idle = self.settings.idle_timeout
        writer = asyncio.create_task(self.outbox.pump(ws, lambda: self.ws is ws))
        try:
            while self.ws is ws and not self.ended:
                try:
                    msg = await ws.receive(timeout=idle)
                except TimeoutError:
                    log.info("session %s: no frame for %g s, closing", self.id, idle)
                    await ws.close(code=1008, message=b"idle")
                    return
                if msg.type == WSMsgType.TEXT:
                    self.handle(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    self.limiter.warning("binary", "session %s: ignored a binary frame", self.id)
                elif msg.type == WSMsgType.ERROR:
                    log.warning("session %s: %s", self.id, ws.exception())
                    return
                else:  # CLOSE, CLOSING, CLOSED
                    return
            if self.ended:
                await self._drain_results()
                await ws.close()
        finally:
            writer.cancel()

    def handle(self, frame: str) -> None:
        """One text frame. Synchronous: nothing here waits for recognition."""
        self.frames += 1
        try:
            message = mj.parse_frame(frame)
        except mj.FrameError as exc:
            self.limiter.warning("frame", "session %s: ignored a frame: %s", self.id, exc)
            return
        if isinstance(message, mj.Media):
            source = self.sources.get(message.tag) or self._open(message.tag, None)
            if source is not None:
                source.accept(message)
        elif isinstance(message, mj.Ping):
            self.outbox.put(mj.pong(message.id), urgent=True)
        elif isinstance(message, mj.Start):
            self._start(message)
        elif isinstance(message, mj.SessionEnd):
            log.info("session %s: the bridge ended transcription", self.id)
            self.end()
        elif isinstance(message, mj.Info):
            log.info(
                "session %s: %s %s (region %r)",
                self.id, message.application, message.version, message.region,
            )  # fmt: skip
        else:
            self.limiter.warning("event", "session %s: ignored event %s", self.id, message.event)

    def _start(self, start: mj.Start) -> None:
        if start.encoding != "opus":
            self.refuse(start.tag, f"encoding {start.encoding!r} is not supported (only opus)")
            return
        self.refused.pop(start.tag, None)
        if start.tag not in self.sources:
            self._open(start.tag, start.endpoint_id)

    def _open(self, tag: str, endpoint: str | None) -> Source | None:
        if tag in self.refused:
            return None
        if self.ended:
            return None
        try:
            # Counted until the source's transcriber is closed, even after session end.
            slot = self.engine.admit("bridge", self.group, self.settings.bridge_max_sources)
        except Refused as exc:
            self.refuse(tag, str(exc))
            return None
        if endpoint is None:
            log.info("session %s: media for %s before its start; assuming Opus", self.id, tag)
        source = Source(self, tag, endpoint or mj.endpoint_id(tag), slot)
        self.sources[tag] = source
        return source

    def refuse(self, tag: str, reason: str) -> None:
        if tag not in self.refused:
            log.warning("session %s: refusing audio of %s: %s", self.id, tag, reason)
            if len(self.refused) < 10_000:
                self.refused[tag] = reason
        source = self.sources.pop(tag, None)
        if source is not None:
            source.stop(flush=False)

    # --- results ---

    def on_event(self, source: Source, event: CaptionEvent) -> None:
        self.publish(event)
        if not self.send_back or not (event.is_final or self.send_back_interim):
            return
        confidence = None
        if event.is_final:
            confs = [w.conf for w in event.words]
            confidence = sum(confs) / len(confs) if confs else 1.0
        self.outbox.put(
            mj.transcription_result(
                message_id=event.message_id,
                text=event.text,
                confidence=confidence,
                is_interim=not event.is_final,
                endpoint=source.endpoint,
                tag=source.tag,
                timestamp_ms=int(time.time() * 1000),
                language=event.language,
            )
        )

    def end(self) -> None:
        """session-end: queued audio is dropped and recognizers go back at once. A source
        that kept up still gets the final of its open utterance; one that was behind
        (a storm) gets none, so ending never waits for its recognition."""
        self.ended = True
        for source in self.sources.values():
            source.stop(flush=source.queue.qsize() <= CAUGHT_UP)

    async def _drain_results(self) -> None:
        """After session-end: let every source's last final out, then give the writer a moment."""
        tasks = [s.task for s in self.sources.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.outbox.sent(), 2.0)

    async def _tick(self) -> None:
        silence_s = self.settings.bridge_quiet_ms / 1000
        while True:
            await asyncio.sleep(TICK)
            now = time.monotonic()
            for source in self.sources.values():
                source.tick(now, silence_s)
            stuck = self.outbox.sending_since
            if stuck is not None and now - stuck > STUCK_WRITER and self.transport is not None:
                log.warning("session %s: the bridge is not reading; dropping its socket", self.id)
                self.transport.abort()
                self.transport = None

    async def close(self) -> None:
        """The session is over (expired or shut down): drop queued audio, free everything."""
        self._ticker.cancel()
        sources = list(self.sources.values())
        self.sources.clear()
        for source in sources:
            source.stop(flush=False)
        if sources:
            await asyncio.wait([s.task for s in sources], timeout=5.0)


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
            old = session.ws
            if old is not None:
                log.info("session %s: a newer connection takes over", sid)
                self._spawn(old.close(code=1000, message=b"replaced by a newer connection"))
            else:
                log.info("session %s: resumed", sid)
            session.outbox.clear_urgent()
            for source in session.sources.values():
                source.jitter.reset()  # the bridge may number packets afresh
        session.ws = ws
        session.transport = transport
        session.send_back = query.send_back
        session.send_back_interim = query.send_back_interim
        return session

    def detach(self, session: BridgeSession, ws: web.WebSocketResponse) -> None:
        if session.ws is not ws:
            return  # a newer socket already took over
        session.ws = None
        session.transport = None
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
