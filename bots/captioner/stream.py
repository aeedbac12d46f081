"""One stream's audio → caption events: resampling, VAD segmentation, Vosk decoding.

Audio is resampled to 16 kHz and segmented by the VAD on the event loop (microseconds
a frame); only speech, and the pauses just after it, reach Vosk, on a worker thread. A
recognizer is borrowed from the pool when an utterance starts. At the VAD's end of an
utterance its final is published with ``Result()``, which keeps the recognizer's feature
pipeline (CMVN, i-vector): the recognizer stays with the stream for ``vad_hold_ms``,
fed the pause, and if speech resumes the next utterance continues on it. Only when the
pause outlasts the hold is it finalized and returned, so a silent participant holds none.
(``FinalResult()`` at every VAD end started each segment cold: a sentence split at a
comma lost 5-8 CER points on its second half; see docs/benchmarks.md, finding 3.)
Open a transcriber through ``Engine.open_stream`` (a ``StreamLease``),
which counts the stream and closes the transcriber with it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import soxr

from bots.captioner import metrics, vad
from bots.captioner.admission import Refused
from bots.captioner.recognizers import Recognizer, RecognizerPool
from plenary.events import CaptionEvent, Word, clean_text
from plenary.settings import CaptionerSettings

EventSink = Callable[[CaptionEvent], None]
log = logging.getLogger(__name__)
PIECE_BYTES = vad.RATE // 5  # 0.1 s of 16-bit audio per AcceptWaveform call
RESUME_PREROLL_BYTES = vad.FRAME_BYTES * 10  # 0.3 s of onset, fed again on a resume


@dataclass(slots=True)
class Final:
    """A finished utterance: the event plus the Vosk-shaped result for protocol replies."""

    event: CaptionEvent
    result: dict[str, Any]


@dataclass(slots=True)
class FeedResult:
    finals: list[Final] = field(default_factory=list)
    partial: str | None = None  # latest partial text while an utterance is open


class StreamTranscriber:
    """One participant's audio → caption events. Call ``feed`` sequentially, never concurrently."""

    def __init__(
        self,
        settings: CaptionerSettings,
        pool: RecognizerPool,
        executor: Executor,
        *,
        sample_rate: float,
        language: str,
        room: str,
        speaker: str,
        max_alternatives: int = 0,
        phrase_list: Sequence[str] | None = None,
        sink: EventSink | None = None,
    ) -> None:
        self._pool = pool
        self._executor = executor
        self.language = language
        self.room = room
        self.speaker = speaker
        self.max_alternatives = max_alternatives
        self._grammar = json.dumps(list(phrase_list), ensure_ascii=False) if phrase_list else None
        self._sink = sink
        self.sample_rate = float(sample_rate)
        rate = self.sample_rate
        self._resampler = (
            None if rate == vad.RATE else soxr.ResampleStream(rate, vad.RATE, 1, dtype="int16")
        )
        s = settings
        self._segmenter = vad.Segmenter(
            aggressiveness=s.vad_aggressiveness,
            energy_floor_dbfs=s.vad_energy_floor_dbfs,
            silence_ms=s.vad_silence_ms,
            max_utterance_s=s.max_utterance_seconds,
            hold_ms=s.vad_hold_ms,
        )
        self._partial_every = s.partial_interval_ms / 1000
        self._rec: Recognizer | None = None
        self._resting = False  # _rec is held through a pause: its utterance is published
        self._inflight: asyncio.Future[tuple[list[Final], CaptionEvent | None]] | None = None
        # Belt and braces for the above: this stream's recognizer is only ever
        # touched by one worker thread at a time.
        self._thread_lock = threading.Lock()
        self._utt_start = 0.0  # stream seconds of the utterance's first sample
        self._utt_base = 0.0  # recognizer's ``fed`` when the utterance began
        self._seg_start = 0.0  # stream seconds where the current segment's speech began
        self._since_partial = 0.0
        self._message_id = ""
        self._partial = ""
        self.audio_seconds = 0.0
        self.decoded_seconds = 0.0
        self.abandoned = False  # the stream is gone: decode no more audio

    @property
    def in_utterance(self) -> bool:
        """Speech is under way (not only a recognizer held through a pause)."""
        return self._rec is not None and not self._resting

    @property
    def holds_recognizer(self) -> bool:
        return self._rec is not None

    async def feed(self, pcm: bytes) -> FeedResult:
        """Accept s16le mono PCM at ``sample_rate`` (whole samples)."""
        self.audio_seconds += len(pcm) / 2 / self.sample_rate
        metrics.AUDIO_RECEIVED.inc(len(pcm) / 2 / self.sample_rate)
        samples = np.frombuffer(pcm, dtype="<i2")
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples)
        actions = self._segmenter.push(samples.tobytes())
        return await self._run(actions)

    async def flush(self) -> FeedResult:
        """Finalize the open utterance now (eof, reset, or the sender went quiet)."""
        if self._resampler is not None:
            tail = self._resampler.resample_chunk(np.zeros(0, dtype=np.int16), last=True)
            actions = self._segmenter.push(tail.tobytes())
            self._resampler = soxr.ResampleStream(self.sample_rate, vad.RATE, 1, dtype="int16")
        else:
            actions = []
        actions += self._segmenter.end()
        return await self._run(actions)

    def abandon(self) -> None:
        """Decode no more audio, even jobs already waiting for a thread; the utterance
        open now still gets its final from what was decoded, at the next flush."""
        self.abandoned = True

    async def close(self) -> None:
        """Release the recognizer without producing a result (the stream vanished).

        Safe while a decode is still running for a cancelled caller: it waits for it,
        because one recognizer used from two threads aborts the process inside Kaldi.
        """
        if self._inflight is not None and not self._inflight.done():
            await asyncio.gather(self._inflight, return_exceptions=True)
        if self._rec is not None:
            rec, self._rec = self._rec, None
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, self._discard, rec)

    async def _run(self, actions: list[vad.Action]) -> FeedResult:
        out = FeedResult()
        if not actions and self._rec is None:
            return out
        loop = asyncio.get_running_loop()
        started = time.monotonic()  # caption latency: from the audio's arrival
        work = loop.run_in_executor(self._executor, self._decode, actions)
        # If our caller is cancelled (a client vanished, shutdown), the decode still
        # runs to its end on the worker thread: shield it, and deliver its events
        # from a callback so no final is lost and close() can wait for it.
        work.add_done_callback(self._deliver)
        self._inflight = work
        finals, _ = await asyncio.shield(work)  # _deliver has published them by now
        for _final in finals:
            metrics.CAPTION_LATENCY.observe(time.monotonic() - started)
        out.finals = finals
        out.partial = self._partial if self.in_utterance else None
        return out

    def _deliver(self, work: asyncio.Future[tuple[list[Final], CaptionEvent | None]]) -> None:
        """Hand a decode's events to the sink, on the event loop, never from a worker thread."""
        if self._sink is None or work.cancelled() or work.exception() is not None:
            return
        finals, partial = work.result()
        for final in finals:
            self._sink(final.event)
        if partial is not None:
            self._sink(partial)

    # --- runs on a worker thread; touches only this stream's state ---

    def _decode(self, actions: list[vad.Action]) -> tuple[list[Final], CaptionEvent | None]:
        with self._thread_lock:
            started, decoded = time.perf_counter(), self.decoded_seconds
            out = self._decode_locked(actions)
            metrics.observe_decode(time.perf_counter() - started, self.decoded_seconds - decoded)
            return out

    def _decode_locked(self, actions: list[vad.Action]) -> tuple[list[Final], CaptionEvent | None]:
        finals: list[Final] = []
        partial: CaptionEvent | None = None
        for i, action in enumerate(actions):
            if self.abandoned and not isinstance(action, vad.End | vad.Release):
                continue
            if isinstance(action, vad.Start):
                pcm = action.pcm
                if self._rec is not None:
                    pcm = self._resume(action)
                else:
                    self._begin(action)
                if pcm and self._rec is not None:
                    self._accept(pcm, finals)
            elif isinstance(action, vad.Audio):
                if self._rec is not None:
                    self._accept(action.pcm, finals)
            elif isinstance(action, vad.End):
                # Followed at once by its Release (eof, flush): nothing more will come,
                # so let FinalResult decode the feature pipeline's last frames too.
                last = i + 1 < len(actions) and isinstance(actions[i + 1], vad.Release)
                self._end(action.sample / vad.RATE, finals, last=last)
            else:
                self._release()
        rec = self._rec
        if rec is not None and not self._resting and self._since_partial >= self._partial_every:
            self._since_partial = 0.0
            raw = json.loads(rec.partial_result()).get("partial", "")
            text = clean_text(raw)
            if text and text != self._partial:
                self._partial = text
                partial = self._partial_event()
        return finals, partial

    def _begin(self, start: vad.Start) -> None:
        try:
            pooled = self._pool.acquire(self.language, self._grammar)
        except Refused as exc:
            # Not reached while every stream is counted by its lease (one recognizer
            # each at most); should it be, this utterance is lost, said in the log.
            log.warning("%s/%s: an utterance is not recognized: %s", self.room, self.speaker, exc)
            return
        # Word timings are always on: they place captions on the clock; replies
        # carry them only when the client asked.
        pooled.rec.SetWords(True)
        pooled.rec.SetMaxAlternatives(self.max_alternatives)
        self._rec = pooled
        self._resting = False
        self._utt_start = start.sample / vad.RATE
        self._utt_base = pooled.fed
        self._seg_start = self._utt_start
        self._since_partial = 0.0
        self._message_id = str(uuid.uuid4())
        self._partial = ""

    def _resume(self, start: vad.Start) -> bytes:
        """Speech again within the hold: a new caption on the same, warm recognizer.

        Whatever Vosk made of the pause so far is dropped (``Result()``, which keeps the
        feature pipeline): left in, it came out as a stray word before the next sentence.
        The onset, already fed as the end of the pause, is fed again after it: the
        returned tail of the pre-roll (a warm recognizer needs no more).
        """
        assert self._rec is not None
        self._rec.result()
        pcm = start.pcm[-RESUME_PREROLL_BYTES:]
        self._resting = False
        self._utt_start = (start.sample + (len(start.pcm) - len(pcm)) // 2) / vad.RATE
        self._seg_start = self._utt_start
        self._utt_base = self._rec.fed
        self._since_partial = 0.0
        self._message_id = str(uuid.uuid4())
        self._partial = ""
        return pcm

    def _accept(self, pcm: bytes, finals: list[Final]) -> None:
        # In pieces, so a stream abandoned mid-call stops within a tenth of a second of decoding.
        for i in range(0, len(pcm), PIECE_BYTES):
            if self.abandoned and i:
                return
            self._accept_piece(pcm[i : i + PIECE_BYTES], finals)

    def _accept_piece(self, pcm: bytes, finals: list[Final]) -> None:
        assert self._rec is not None
        seconds = len(pcm) / 2 / vad.RATE
        self._rec.fed += seconds
        self._since_partial += seconds
        self.decoded_seconds += seconds
        if self._rec.accept(pcm):
            # Vosk's own endpointer fired. Inside the utterance: publish what it has and
            # keep the recognizer for the rest of it. In a held pause the VAD heard no
            # speech, so whatever Vosk made of the noise is not a caption.
            result = json.loads(self._rec.result())
            if not self._resting:
                self._publish(result, finals)
                self._message_id = str(uuid.uuid4())
                self._partial = ""

    def _end(self, end: float, finals: list[Final], *, last: bool) -> None:
        """The VAD's end of an utterance: publish it now; keep the recognizer for the hold."""
        if self._rec is None or self._resting:
            return
        rec = self._rec
        raw = rec.final_result() if last else rec.result()
        self._publish(json.loads(raw), finals, end=end)
        self._resting = True
        self._partial = ""

    def _release(self) -> None:
        """The hold is over: finalize the recognizer and return it to the pool. Its
        result covers only the pause after the last published final: not a caption."""
        if self._rec is None:
            return
        rec, self._rec = self._rec, None
        if not self._resting:  # a Release with no End before it (not emitted by vad)
            log.debug("%s/%s: released mid-utterance", self.room, self.speaker)
        self._resting = False
        self._pool.release(self.language, self._grammar, rec)  # finishes it
        self._partial = ""

    def _discard(self, rec: Recognizer) -> None:
        if self.abandoned:
            # No result wanted and no time to lose: the recognizer is dropped mid-
            # utterance (Reset does not clear it for reuse; FinalResult is a last decode).
            self._pool.release(self.language, self._grammar, rec, reuse=False)
            return
        with self._thread_lock:
            self._pool.release(self.language, self._grammar, rec)  # finishes it

    def _publish(self, raw: dict[str, Any], finals: list[Final], end: float | None = None) -> None:
        offset = self._utt_start - self._utt_base
        if "alternatives" in raw:
            alternatives = raw["alternatives"]
            for alt in alternatives:
                alt["text"] = clean_text(alt.get("text", ""))
                for w in alt.get("result", []):
                    _shift(w, offset)
            text = alternatives[0]["text"] if alternatives else ""
            word_dicts: list[dict[str, Any]] = (
                alternatives[0].get("result", []) if alternatives else []
            )
        else:
            raw["text"] = clean_text(raw.get("text", ""))
            text = raw["text"]
            word_dicts = raw.get("result", [])
            for w in word_dicts:
                _shift(w, offset)
        if not text:
            return
        words = tuple(Word(w["word"], w["start"], w["end"], w.get("conf", 1.0)) for w in word_dicts)
        start = words[0].start if words else self._seg_start
        stop = words[-1].end if words else (end if end is not None else start)
        event = CaptionEvent(
            room=self.room,
            speaker=self.speaker,
            language=self.language,
            text=text,
            is_final=True,
            start=round(start, 3),
            end=round(stop, 3),
            message_id=self._message_id,
            words=words,
        )
        finals.append(Final(event, raw))

    def _partial_event(self) -> CaptionEvent:
        assert self._rec is not None
        return CaptionEvent(
            room=self.room,
            speaker=self.speaker,
            language=self.language,
            text=self._partial,
            is_final=False,
            start=round(self._seg_start, 3),
            end=round(self._utt_start + self._rec.fed - self._utt_base, 3),
            message_id=self._message_id,
        )


def _shift(word: dict[str, Any], offset: float) -> None:
    word["word"] = clean_text(word.get("word", ""))
    word["start"] = round(word["start"] + offset, 3)
    word["end"] = round(word["end"] + offset, 3)
