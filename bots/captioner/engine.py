"""The recognition engine: shared models, a bounded thread pool, per-stream transcribers.

Audio of every stream is resampled to 16 kHz and segmented by the VAD on the event
loop (microseconds a frame); only speech reaches Vosk, in the thread pool. A
recognizer is borrowed from a pool when an utterance starts and returned when it
ends, so a silent participant holds none.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import soxr
import vosk

from bots.captioner import metrics, vad
from bots.captioner.models import ModelRegistry
from plenary.events import CaptionEvent, Word, clean_text
from plenary.settings import CaptionerSettings

EventSink = Callable[[CaptionEvent], None]
log = logging.getLogger(__name__)
SHED_FRACTION = 0.9  # new streams are refused from this fraction of captioner.max_rss_mb
PIECE_BYTES = vad.RATE // 5  # 0.1 s of 16-bit audio per AcceptWaveform call
RSS_EVERY = 1.0  # seconds between two reads of /proc/self/statm


class Refused(Exception):
    """The engine takes no new stream or recognizer now; the message says why.

    ``kind`` is the label of ``plenary_captioner_streams_refused``."""

    def __init__(self, reason: str, kind: str = "capacity") -> None:
        super().__init__(reason)
        self.kind = kind


class _Recognizer:
    """A Vosk recognizer and how much audio it has consumed in its lifetime.

    Vosk reports word times from the recognizer's creation, across utterances;
    ``fed`` lets us move them onto the stream's clock.
    """

    __slots__ = ("fed", "rec")

    def __init__(self, rec: vosk.KaldiRecognizer) -> None:
        self.rec = rec
        self.fed = 0.0


class RecognizerPool:
    """Idle recognizers per language, reused across utterances and streams.

    Creating one costs ~60 ms, and a fresh one decodes at about twice the CPU of a
    warm one: the Korean model has no prebuilt graph, so each recognizer builds a
    cache of the decoding graph as it goes. That cache only grows (measured: +211 MiB
    over 36 utterances) and is freed only with the recognizer, so a recognizer is
    retired after ``max_audio_seconds`` of speech and the freed memory is handed back
    to the system. After FinalResult Vosk rebuilds its decoder and feature pipeline,
    so reuse carries no speaker state over (checked: same text fresh or reused).
    """

    def __init__(
        self,
        models: ModelRegistry,
        max_idle: int,
        max_audio_seconds: float,
        limit: int = 0,
        memory: MemoryGuard | None = None,
    ) -> None:
        self._models = models
        self.limit = limit  # recognizers in use at most (0: unbounded); checked here
        self._memory = memory
        self._max_idle = max_idle
        self._max_audio = max_audio_seconds
        self._idle: dict[str, list[_Recognizer]] = {}
        self._lock = threading.Lock()
        self.created = 0
        self.retired = 0
        self.in_use = 0

    def acquire(self, language: str, grammar: str | None) -> _Recognizer:
        """A recognizer, idle or new; Refused at the limit, or for a new one above the
        memory limit (an idle one is still handed out: it costs nothing more)."""
        with self._lock:
            if self.limit and self.in_use >= self.limit:
                raise Refused(f"{self.in_use} recognizers in use (captioner.max_streams)")
            idle = self._idle.get(language) if grammar is None else None
            if idle:
                self.in_use += 1
                return idle.pop()
            self.in_use += 1  # reserved while the new one is built, outside the lock
        try:
            if self._memory is not None and (reason := self._memory.over_limit()):
                raise Refused(reason)
            rec = self._create(language, grammar)
        except BaseException:
            with self._lock:
                self.in_use -= 1
            raise
        with self._lock:
            self.created += 1
        return rec

    def _create(self, language: str, grammar: str | None) -> _Recognizer:
        model = self._models.get(language)
        rec = (
            vosk.KaldiRecognizer(model, vad.RATE, grammar)
            if grammar
            else vosk.KaldiRecognizer(model, vad.RATE)
        )
        return _Recognizer(rec)

    def release(
        self, language: str, grammar: str | None, rec: _Recognizer, *, reuse: bool = True
    ) -> None:
        with self._lock:
            self.in_use -= 1
            idle = self._idle.setdefault(language, [])
            reusable = reuse and grammar is None and rec.fed < self._max_audio
            if reusable and len(idle) < self._max_idle:
                idle.append(rec)
                return
            self.retired += 1
        # Grammar recognizers are per stream; worn or surplus ones go. Dropping the last
        # reference frees the Kaldi objects now; glibc keeps the pages unless trimmed.
        del rec
        _trim_heap()

    def idle_count(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._idle.values())

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "idle": sum(len(v) for v in self._idle.values()),
                "in_use": self.in_use,
                "created": self.created,
                "retired": self.retired,
            }


def _trim_heap() -> None:
    """Give freed heap pages back to the system (glibc only; a no-op elsewhere)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6")
except OSError:  # not glibc
    _LIBC = None


class MemoryGuard:
    """The process's resident memory against ``captioner.max_rss_mb`` (0: no limit).

    Read from /proc/self/statm at most once a second: callers ask on every new stream.
    """

    def __init__(self, limit_mb: Callable[[], int]) -> None:
        self._limit = limit_mb
        self._read_at = -RSS_EVERY
        self._rss_mb = 0.0

    def rss_mb(self) -> float:
        now = time.monotonic()
        if now - self._read_at >= RSS_EVERY:
            self._read_at = now
            self._rss_mb = metrics.rss_bytes() / 2**20
        return self._rss_mb

    def shed_reason(self) -> str | None:
        """Why a new stream is refused: RSS within 10 % of the limit; None to take it."""
        limit = self._limit()
        if limit and self.rss_mb() >= limit * SHED_FRACTION:
            return (f"memory: RSS {self.rss_mb():.0f} MB is near the limit of {limit} MB "
                    "(captioner.max_rss_mb)")  # fmt: skip
        return None

    def over_limit(self) -> str | None:
        """Why no new recognizer is built: RSS at the limit itself."""
        limit = self._limit()
        if limit and self.rss_mb() >= limit:
            return f"memory: RSS {self.rss_mb():.0f} MB reached captioner.max_rss_mb ({limit})"
        return None


@dataclass(eq=False)
class Slot:
    """One admitted stream; ``release`` it exactly when its transcriber is closed."""

    engine: Engine
    path: str
    group: str
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.engine._release(self)


class Engine:
    """Shared by every stream of a process: models, pool of recognizers, threads.

    The engine owns the stream budget: every endpoint asks ``admit`` for a stream and
    releases it once the stream's transcriber is closed (not when its socket goes), so
    streams, the ``plenary_captioner_streams`` gauge and recognizers in use (at most one
    per stream, and the pool refuses more than ``max_streams``) can never run past
    ``captioner.max_streams``, however fast sockets come and go.
    """

    def __init__(self, settings: CaptionerSettings, models: ModelRegistry) -> None:
        self.settings = settings
        self.models = models
        self.threads = settings.threads or os.cpu_count() or 1
        self.executor = ThreadPoolExecutor(self.threads, thread_name_prefix="vosk")
        self.memory = MemoryGuard(lambda: self.settings.max_rss_mb)
        self.recognizers = RecognizerPool(
            models,
            max_idle=settings.warm_recognizers or self.threads,
            max_audio_seconds=settings.recognizer_max_audio_seconds,
            limit=settings.max_streams,
            memory=self.memory,
        )
        self._paths: Counter[str] = Counter()
        self._groups: Counter[str] = Counter()

    @property
    def active_streams(self) -> int:
        return sum(self._paths.values())

    def admit(self, path: str, group: str = "", group_limit: int = 0) -> Slot:
        """A stream for ``path`` (vosk, bridge, file), or Refused saying why.

        ``group`` is a Jitsi bridge session: it holds at most ``group_limit`` streams and
        no more than a fair share of ``max_streams``, the machine divided between the
        sessions holding streams and the vosk endpoint, so a session with hundreds of
        tags leaves room for vosk clients and other meetings. Vosk clients are refused
        only when every stream is taken, or memory is short.
        """
        limit = self.settings.max_streams
        if self.active_streams >= limit:
            raise self._refused(f"at capacity ({limit} streams, captioner.max_streams)", "capacity")
        if reason := self.memory.shed_reason():
            raise self._refused(reason, "memory")
        if group:
            held = self._groups[group]
            if group_limit and held >= group_limit:
                raise self._refused(
                    f"the session has {held} sources (captioner.bridge_max_sources)", "session"
                )
            sessions = len(self._groups) + (0 if held else 1)
            share = max(1, limit // (sessions + 1))  # +1: the vosk endpoint's share
            if held >= share:
                raise self._refused(
                    f"the session has its fair share of the captioner: {held} of {limit} "
                    f"streams with {sessions} bridge session(s) and the vosk endpoint",
                    "share",
                )
            self._groups[group] += 1
        self._paths[path] += 1
        metrics.STREAMS.labels(path=path).inc()
        return Slot(self, path, group)

    @staticmethod
    def _refused(reason: str, kind: str) -> Refused:
        metrics.STREAMS_REFUSED.labels(kind=kind).inc()
        return Refused(reason, kind)

    def _release(self, slot: Slot) -> None:
        self._paths[slot.path] -= 1
        metrics.STREAMS.labels(path=slot.path).dec()
        if slot.group:
            self._groups[slot.group] -= 1
            if self._groups[slot.group] <= 0:
                del self._groups[slot.group]

    async def preload(self, languages: Sequence[str]) -> None:
        loop = asyncio.get_running_loop()
        for language in languages:
            await loop.run_in_executor(self.executor, self.models.get, language)

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)

    def open_stream(self, **kwargs: Any) -> StreamTranscriber:
        return StreamTranscriber(self, **kwargs)


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
        engine: Engine,
        *,
        sample_rate: float,
        language: str,
        room: str,
        speaker: str,
        max_alternatives: int = 0,
        phrase_list: Sequence[str] | None = None,
        sink: EventSink | None = None,
    ) -> None:
        self._engine = engine
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
        s = engine.settings
        self._segmenter = vad.Segmenter(
            aggressiveness=s.vad_aggressiveness,
            energy_floor_dbfs=s.vad_energy_floor_dbfs,
            silence_ms=s.vad_silence_ms,
            max_utterance_s=s.max_utterance_seconds,
        )
        self._partial_every = s.partial_interval_ms / 1000
        self._rec: _Recognizer | None = None
        self._inflight: asyncio.Future[tuple[list[Final], CaptionEvent | None]] | None = None
        # Belt and braces for the above: this stream's recognizer is only ever
        # touched by one worker thread at a time.
        self._thread_lock = threading.Lock()
        self._utt_start = 0.0  # stream seconds of the utterance's first sample
        self._utt_base = 0.0  # recognizer's ``fed`` when the utterance began
        self._since_partial = 0.0
        self._message_id = ""
        self._partial = ""
        self.audio_seconds = 0.0
        self.decoded_seconds = 0.0
        self.abandoned = False  # the stream is gone: decode no more audio

    @property
    def in_utterance(self) -> bool:
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
            await loop.run_in_executor(self._engine.executor, self._discard, rec)

    async def _run(self, actions: list[vad.Action]) -> FeedResult:
        out = FeedResult()
        if not actions and self._rec is None:
            return out
        loop = asyncio.get_running_loop()
        started = time.monotonic()  # caption latency: from the audio's arrival
        work = loop.run_in_executor(self._engine.executor, self._decode, actions)
        # If our caller is cancelled (a client vanished, shutdown), the decode still
        # runs to its end on the worker thread: shield it, and deliver its events
        # from a callback so no final is lost and close() can wait for it.
        work.add_done_callback(self._deliver)
        self._inflight = work
        finals, _ = await asyncio.shield(work)  # _deliver has published them by now
        for _final in finals:
            metrics.CAPTION_LATENCY.observe(time.monotonic() - started)
        out.finals = finals
        out.partial = self._partial if self._rec is not None else None
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
        for action in actions:
            if self.abandoned and not isinstance(action, vad.End):
                continue
            if isinstance(action, vad.Start):
                self._begin(action)
                if action.pcm:
                    self._accept(action.pcm, finals)
            elif isinstance(action, vad.Audio):
                if self._rec is not None:
                    self._accept(action.pcm, finals)
            else:
                self._finish(action.sample / vad.RATE, finals)
        if self._rec is not None and self._since_partial >= self._partial_every:
            self._since_partial = 0.0
            raw = json.loads(self._rec.rec.PartialResult()).get("partial", "")
            text = clean_text(raw)
            if text and text != self._partial:
                self._partial = text
                partial = self._partial_event()
        return finals, partial

    def _begin(self, start: vad.Start) -> None:
        try:
            pooled = self._engine.recognizers.acquire(self.language, self._grammar)
        except Refused as exc:
            # Not reached while streams are admitted (one recognizer each at most);
            # a stream opened around ``admit`` loses this utterance, said in the log.
            log.warning("%s/%s: an utterance is not recognized: %s", self.room, self.speaker, exc)
            return
        # Word timings are always on: they place captions on the clock; replies
        # carry them only when the client asked.
        pooled.rec.SetWords(True)
        pooled.rec.SetMaxAlternatives(self.max_alternatives)
        self._rec = pooled
        self._utt_start = start.sample / vad.RATE
        self._utt_base = pooled.fed
        self._since_partial = 0.0
        self._message_id = str(uuid.uuid4())
        self._partial = ""

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
        if self._rec.rec.AcceptWaveform(pcm):
            # Vosk's own endpointer fired inside the utterance: publish what it has
            # and keep the recognizer for the rest of the utterance.
            self._publish(json.loads(self._rec.rec.Result()), finals)
            self._message_id = str(uuid.uuid4())
            self._partial = ""

    def _finish(self, end: float, finals: list[Final]) -> None:
        if self._rec is None:
            return
        rec, self._rec = self._rec, None
        self._publish(json.loads(rec.rec.FinalResult()), finals, end=end)
        self._engine.recognizers.release(self.language, self._grammar, rec)
        self._partial = ""

    def _discard(self, rec: _Recognizer) -> None:
        if self.abandoned:
            # No result wanted and no time to lose: the recognizer is dropped mid-
            # utterance (Reset does not clear it for reuse; FinalResult is a last decode).
            self._engine.recognizers.release(self.language, self._grammar, rec, reuse=False)
            return
        with self._thread_lock:
            rec.rec.FinalResult()
        self._engine.recognizers.release(self.language, self._grammar, rec)

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
        start = words[0].start if words else self._utt_start
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
            start=round(self._utt_start, 3),
            end=round(self._utt_start + self._rec.fed - self._utt_base, 3),
            message_id=self._message_id,
        )


def _shift(word: dict[str, Any], offset: float) -> None:
    word["word"] = clean_text(word.get("word", ""))
    word["start"] = round(word["start"] + offset, 3)
    word["end"] = round(word["end"] + offset, 3)
