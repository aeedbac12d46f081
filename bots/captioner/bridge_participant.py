"""One participant of a bridged meeting: its Opus packets → its captions.

The session's receive loop hands each media packet to ``ParticipantStream.accept``,
which never waits: the packet goes through the jitter buffer into a bounded queue.
The participant's own task decodes the queue in batches and feeds the stream's
transcriber; silence is gathered rather than decoded while nobody speaks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace

from bots.captioner import mediajson as mj
from bots.captioner import metrics, opus
from bots.captioner.bridge_bounds import CAUGHT_UP, QUEUE_PACKETS, LogLimiter, PacketHealth
from bots.captioner.engine import StreamLease
from plenary.events import CaptionEvent

REORDER_WAIT = 0.06  # a held packet waits this long for a missing one when nothing follows
VOICE_HOLD = 2.0  # after a voiced packet, silence is fed at once so the utterance can end
BATCH = 50  # queued steps decoded and fed together
FLUSH = "flush"
STOP = "stop"

Op = opus.Step | str
ResultSink = Callable[["ParticipantStream", CaptionEvent], None]
Refuse = Callable[[str, str], None]  # (tag, reason): the session refuses the tag's audio


class ParticipantStream:
    """One participant's audio (a bridge tag): jitter buffer, decoder, queue, task, transcriber.

    It holds its stream ``lease`` until its task ends, whichever way: the transcriber is
    closed and the stream released there, so the engine's count never outruns it.
    """

    def __init__(
        self,
        lease: StreamLease,
        *,
        tag: str,
        endpoint: str,
        speaker: str,
        language: str,
        room: str,
        meeting_id: str,
        limiter: LogLimiter,
        on_result: ResultSink,
        refuse: Refuse,
    ) -> None:
        self.tag = tag
        self.endpoint = endpoint
        self.meeting_id = meeting_id
        self._lease = lease
        self._limiter = limiter
        self._on_result = on_result
        self._refuse = refuse
        self.jitter = opus.JitterBuffer()
        self.decoder = opus.OpusSource()
        self.health = PacketHealth()
        self.transcriber = lease.open_transcriber(
            sample_rate=opus.RATE,
            language=language,
            room=room,
            speaker=speaker,
            sink=self._on_event,
        )
        self.queue: asyncio.Queue[Op] = asyncio.Queue(QUEUE_PACKETS)
        self.last_packet = time.monotonic()
        self.last_voice = -VOICE_HOLD
        self.needs_flush = False
        self.pending_silence = 0
        self.stopping = False
        self.task = asyncio.create_task(self._run(), name=f"bridge participant {tag}")

    @property
    def kept_up(self) -> bool:
        """At most 0.5 s of audio is waiting for recognition."""
        return self.queue.qsize() <= CAUGHT_UP

    # --- on the receive loop: cheap, never awaits ---

    def accept(self, media: mj.Media) -> None:
        now = time.monotonic()
        self.last_packet = now
        self.health.received()
        try:
            data = mj.decode_payload(media)
        except mj.FrameError as exc:
            self._bad_packet(str(exc), "base64")
            return
        # Garbage never reaches libopus, which would make noise of it (and noise words).
        if invalid := opus.invalid_packet(data):
            self._bad_packet(f"invalid Opus packet ({invalid}, {len(data)} bytes)", invalid)
            return
        silent = mj.is_silent(media)
        if not silent:
            self.last_voice = now
        for step in self.jitter.push(opus.Packet(media.chunk, media.timestamp, data, silent)):
            self._step(step)

    def tick(self, now: float, silence_s: float) -> None:
        """Release packets held for reordering, and flush after ``silence_s`` without any."""
        quiet = now - self.last_packet
        if self.jitter.holding and quiet >= REORDER_WAIT:
            for step in self.jitter.drain():
                self._step(step)
        if self.needs_flush and quiet >= silence_s:
            self.needs_flush = False
            self._enqueue(FLUSH)

    def resume(self) -> None:
        """The bridge reconnected: it may number packets afresh."""
        self.jitter.reset()

    def stop(self, *, flush: bool) -> None:
        """End the task. With ``flush`` (a participant that kept up) its queue is decoded
        and the open utterance gets its final; without, the queued audio is dropped at
        once and decodes waiting for a thread are skipped."""
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

    def _step(self, step: opus.Step) -> None:
        """Queue a step; silence is gathered while nobody is speaking (it costs nothing)."""
        if isinstance(step, opus.Gap) or (isinstance(step, opus.Packet) and step.silent):
            samples = step.samples if isinstance(step, opus.Gap) else opus.packet_samples(step.data)
            self.pending_silence += samples
            speaking = self.transcriber.in_utterance or (
                time.monotonic() - self.last_voice < VOICE_HOLD
            )
            if speaking or self.pending_silence >= opus.RATE:
                self._enqueue(opus.Gap(self.pending_silence))
                self.pending_silence = 0
            return
        if self.pending_silence:
            self._enqueue(opus.Gap(self.pending_silence))
            self.pending_silence = 0
        self.needs_flush = True
        self._enqueue(step)

    def _enqueue(self, op: Op) -> None:
        if self.stopping:
            return
        try:
            self.queue.put_nowait(op)
        except asyncio.QueueFull:
            self._limiter.warning(
                f"behind {self.tag}", "session %s tag %s: recognition is behind, dropped audio",
                self.meeting_id, self.tag,
            )  # fmt: skip

    def _bad_packet(self, reason: str, kind: str | None = None) -> None:
        if kind is not None:
            metrics.OPUS_REFUSED.labels(reason=kind).inc()
        self._limiter.warning(
            f"bad {self.tag}", "session %s tag %s: dropped a packet: %s", self.meeting_id,
            self.tag, reason,
        )  # fmt: skip
        if refusal := self.health.bad_packet(reason):
            self._refuse(self.tag, refusal)

    # --- the participant's task: decoding and recognition ---

    async def _run(self) -> None:
        try:
            while True:
                ops = [await self.queue.get()]
                while not self.queue.empty() and len(ops) < BATCH:
                    ops.append(self.queue.get_nowait())
                try:
                    if await self._process(ops):
                        return
                finally:
                    for _ in ops:
                        self.queue.task_done()
        finally:
            # Runs to its end even if the task is cancelled: the recognizer goes back,
            # then the stream is released.
            await self._lease.close()

    async def _process(self, ops: list[Op]) -> bool:
        """Decode and feed a batch; True when the participant is to stop."""
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
            self._bad_packet(f"Opus: {exc}")
            return b""
        metrics.OPUS_DECODED.inc()
        self.health.decoded()
        return pcm

    async def _feed(self, pcm: list[bytes]) -> None:
        data = b"".join(pcm)
        if data:
            await self.transcriber.feed(data)

    def _on_event(self, event: CaptionEvent) -> None:
        self._on_result(self, replace(event, meeting_id=self.meeting_id, endpoint=self.endpoint))
