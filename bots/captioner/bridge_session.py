"""A bridged meeting's transcription: MediaJson frames in, results back (docs/protocols.md §1b).

The receive loop never waits for recognition: it parses a frame, answers a ping at
once, and hands media packets to the participant's ``ParticipantStream``. A ticker
notices participants that went quiet (the bridge stops sending in silence) so their
final comes ``bridge_quiet_ms`` after the last packet. Results go back over the socket
(when asked for) through one writer, the ``Outbox``; every caption is published.

A session outlives its socket (see bridge_ws.SessionRegistry): ``attach`` hands it the
bridge's next socket, and it finds its speakers, recognizers and unsent results there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

from aiohttp import WSMsgType, web

from bots.captioner import mediajson as mj
from bots.captioner.admission import Refused
from bots.captioner.bridge_bounds import LogLimiter, Outbox
from bots.captioner.bridge_participant import ParticipantStream
from bots.captioner.engine import Engine
from bots.captioner.stream import EventSink
from plenary.events import CaptionEvent
from plenary.settings import CaptionerSettings

log = logging.getLogger(__name__)

TICK = 0.05  # how often a session looks for quiet participants


class BridgeSession:
    """A meeting's transcription: its participants, speaker labels and results to send back."""

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
        self.participants: dict[str, ParticipantStream] = {}  # by tag
        self.refused: dict[str, str] = {}  # tag → why
        self.labels: dict[str, str] = {}  # endpoint id → "Speaker N"
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
        return self.labels.setdefault(endpoint, f"Speaker {len(self.labels) + 1}")

    # --- the socket ---

    def attach(
        self, ws: web.WebSocketResponse, transport: asyncio.Transport | None, query: mj.Query
    ) -> web.WebSocketResponse | None:
        """Take the bridge's socket, first or next; returns the one it replaces, if any."""
        old = self.ws
        self.outbox.clear_urgent()  # pongs owed to an earlier socket
        for participant in self.participants.values():
            participant.resume()
        self.ws = ws
        self.transport = transport
        self.send_back = query.send_back
        self.send_back_interim = query.send_back_interim
        return old

    def detach(self, ws: web.WebSocketResponse) -> bool:
        """The socket closed; False when a newer socket had already taken over."""
        if self.ws is not ws:
            return False
        self.ws = None
        self.transport = None
        return True

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

    # --- frames ---

    def handle(self, frame: str) -> None:
        """One text frame. Synchronous: nothing here waits for recognition."""
        self.frames += 1
        try:
            message = mj.parse_frame(frame)
        except mj.FrameError as exc:
            self.limiter.warning("frame", "session %s: ignored a frame: %s", self.id, exc)
            return
        if isinstance(message, mj.Media):
            participant = self.participants.get(message.tag) or self._open(message.tag, None)
            if participant is not None:
                participant.accept(message)
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
        if start.tag not in self.participants:
            self._open(start.tag, start.endpoint_id)

    def _open(self, tag: str, endpoint: str | None) -> ParticipantStream | None:
        if tag in self.refused or self.ended:
            return None
        try:
            # Counted until the participant's task ends, even after session end.
            lease = self.engine.open_stream(
                "bridge", group=self.group, group_limit=self.settings.bridge_max_sources
            )
        except Refused as exc:
            self.refuse(tag, str(exc))
            return None
        if endpoint is None:
            log.info("session %s: media for %s before its start; assuming Opus", self.id, tag)
        endpoint = endpoint or mj.endpoint_id(tag)
        participant = ParticipantStream(
            lease,
            tag=tag,
            endpoint=endpoint,
            speaker=self.label_for(endpoint),
            language=self.language,
            room=self.room,
            meeting_id=self.id,
            limiter=self.limiter,
            on_result=self.on_result,
            refuse=self.refuse,
        )
        self.participants[tag] = participant
        return participant

    def refuse(self, tag: str, reason: str) -> None:
        """Take no more audio of ``tag`` (until the bridge starts it afresh)."""
        if tag not in self.refused:
            log.warning("session %s: refusing audio of %s: %s", self.id, tag, reason)
            if len(self.refused) < 10_000:
                self.refused[tag] = reason
        participant = self.participants.pop(tag, None)
        if participant is not None:
            participant.stop(flush=False)

    # --- results ---

    def on_result(self, participant: ParticipantStream, event: CaptionEvent) -> None:
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
                endpoint=participant.endpoint,
                tag=participant.tag,
                timestamp_ms=int(time.time() * 1000),
                language=event.language,
            )
        )

    # --- the end ---

    def end(self) -> None:
        """session-end: queued audio is dropped and recognizers go back at once. A
        participant that kept up still gets the final of its open utterance; one that
        was behind (a storm) gets none, so ending never waits for its recognition."""
        self.ended = True
        for participant in self.participants.values():
            participant.stop(flush=participant.kept_up)

    async def _drain_results(self) -> None:
        """After session-end: let every participant's last final out, then give the writer
        a moment."""
        tasks = [p.task for p in self.participants.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.outbox.sent(), 2.0)

    async def _tick(self) -> None:
        silence_s = self.settings.bridge_quiet_ms / 1000
        while True:
            await asyncio.sleep(TICK)
            now = time.monotonic()
            for participant in self.participants.values():
                participant.tick(now, silence_s)
            if self.outbox.stuck(now) and self.transport is not None:
                log.warning("session %s: the bridge is not reading; dropping its socket", self.id)
                self.transport.abort()
                self.transport = None

    async def close(self) -> None:
        """The session is over (expired or shut down): drop queued audio, free everything."""
        self._ticker.cancel()
        participants = list(self.participants.values())
        self.participants.clear()
        for participant in participants:
            participant.stop(flush=False)
        if participants:
            await asyncio.wait([p.task for p in participants], timeout=5.0)
