"""The pool of Vosk recognizers shared by every stream, per language."""

from __future__ import annotations

import ctypes
import threading
import time
import wave
from collections import deque
from pathlib import Path

import numpy as np
import soxr
import vosk

from bots.captioner import vad
from bots.captioner.admission import MemoryGuard, Refused
from bots.captioner.vosk_models import ModelRegistry

WARM_SECONDS = 3.0  # audio decoded by each recognizer warmed at start-up
PEAK_BUCKETS = 6  # the observed peak is kept per sixth of ``peak_seconds``


class Recognizer:
    """A Vosk recognizer, how much audio it has consumed in its lifetime, and whether it
    holds an utterance's state.

    Vosk reports word times from the recognizer's creation, across utterances;
    ``fed`` lets us move them onto the stream's clock.

    Vosk's ``FinalResult()`` is a no-op (an empty result, nothing freed) unless audio
    came since the last ``Result()`` (vosk-api src/recognizer.cc: it acts only in the
    RUNNING state). A recognizer given back to the pool in that state would keep the
    last stream's feature pipeline (CMVN, i-vector) and carry it to the next stream
    that borrows it. So the calls go through here, which mirrors Vosk's state, and
    ``finish`` always ends the utterance.
    """

    __slots__ = ("_open", "_running", "fed", "idle_since", "rec")

    def __init__(self, rec: vosk.KaldiRecognizer) -> None:
        self.rec = rec
        self.fed = 0.0
        self.idle_since = 0.0  # time.monotonic() when it last went back to the pool
        self._running = False  # audio accepted since the last Result()/FinalResult()
        self._open = False  # Vosk holds a feature pipeline from audio of ours

    @property
    def open(self) -> bool:
        """Whether the recognizer still holds an utterance's state (not yet finished)."""
        return self._open

    def accept(self, pcm: bytes) -> bool:
        """``AcceptWaveform``: True when Vosk's own endpointer fired."""
        self._running = self._open = True
        return bool(self.rec.AcceptWaveform(pcm))

    def result(self) -> str:
        """``Result()``: the utterance so far; the feature pipeline is kept."""
        self._running = False
        return str(self.rec.Result())

    def final_result(self) -> str:
        """``FinalResult()``: empty when nothing came since ``result()`` (see ``finish``)."""
        if self._running:
            self._running = self._open = False
        return str(self.rec.FinalResult())

    def partial_result(self) -> str:
        return str(self.rec.PartialResult())

    def finish(self) -> None:
        """End the utterance for good, whatever state it is in; the text is discarded.
        After ``result()`` an empty ``AcceptWaveform`` (it decodes nothing) makes Vosk
        running again, so that ``FinalResult()`` frees the feature pipeline."""
        if not self._open:
            return
        if not self._running:
            self.accept(b"")
        self.final_result()


class RecognizerPool:
    """Idle recognizers per language, reused across utterances and streams.

    Creating one costs ~60 ms, and a fresh one decodes at 2-4 times the CPU of a warm
    one: the Korean model has no prebuilt graph, so each recognizer composes its
    decoding graph on the fly and caches it (measured: about half of all decoding CPU
    is that composition). So the pool keeps warm as many recognizers as were in use at
    once during the last ``peak_seconds`` (at least ``warm``), while the process's
    RSS stays under the memory guard's budget for idle recognizers; ``shrink`` lets
    the surplus go once a peak has passed. The cache only grows (+211 MiB over 36
    utterances) and is freed only with the recognizer, so a recognizer is also retired
    after ``max_audio_seconds`` of speech; freed memory is handed back to the system.
    After FinalResult Vosk rebuilds its decoder and feature pipeline, so reuse carries
    no speaker state over (checked: same text fresh or reused).
    """

    def __init__(
        self,
        models: ModelRegistry,
        warm: int,
        max_audio_seconds: float,
        limit: int = 0,
        memory: MemoryGuard | None = None,
        peak_seconds: float = 60.0,
    ) -> None:
        self._models = models
        self.limit = limit  # recognizers in use at most (0: unbounded); checked here
        self._memory = memory
        self.warm = warm  # kept warm however quiet it gets
        self._max_audio = max_audio_seconds
        self._bucket = max(peak_seconds / PEAK_BUCKETS, 1e-3)
        self._peaks: deque[tuple[int, int]] = deque()  # (bucket number, most in use)
        self._idle: dict[str, list[Recognizer]] = {}
        self._lock = threading.Lock()
        self.created = 0
        self.retired = 0
        self.in_use = 0

    # --- sizing ---

    @property
    def peak_seconds(self) -> float:
        """How long a peak of recognizers in use keeps that many warm."""
        return self._bucket * PEAK_BUCKETS

    @peak_seconds.setter
    def peak_seconds(self, seconds: float) -> None:
        self._bucket = max(seconds / PEAK_BUCKETS, 1e-3)

    def _note_locked(self) -> None:
        """Record ``in_use`` in the current bucket of the peak window."""
        now = int(time.monotonic() / self._bucket)
        if self._peaks and self._peaks[-1][0] == now:
            if self.in_use > self._peaks[-1][1]:
                self._peaks[-1] = (now, self.in_use)
        else:
            self._peaks.append((now, self.in_use))
        while self._peaks and self._peaks[0][0] <= now - PEAK_BUCKETS:
            self._peaks.popleft()

    def _target_locked(self) -> int:
        """Recognizers to keep (idle + in use): the most in use at once during the last
        ``peak_seconds``, at least ``warm``."""
        self._note_locked()
        return max(self.warm, *(n for _, n in self._peaks))

    def _room_locked(self, language: str) -> bool:
        """Whether one more idle recognizer of ``language`` may be kept."""
        kept = self.in_use + sum(len(v) for v in self._idle.values())
        if kept >= self._target_locked():
            return False
        return self._memory is None or self._memory.idle_over_budget() is None

    # --- borrowing ---

    def acquire(self, language: str, grammar: str | None) -> Recognizer:
        """A recognizer, idle or new; Refused at the limit, or for a new one above the
        memory limit (an idle one is still handed out: it costs nothing more)."""
        with self._lock:
            if self.limit and self.in_use >= self.limit:
                raise Refused(f"{self.in_use} recognizers in use (captioner.max_streams)")
            idle = self._idle.get(language) if grammar is None else None
            self.in_use += 1  # reserved while a new one is built, outside the lock
            self._note_locked()
            if idle:
                return idle.pop()  # the most recently used: the warmest cache
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

    def _create(self, language: str, grammar: str | None) -> Recognizer:
        model = self._models.get(language)
        rec = (
            vosk.KaldiRecognizer(model, vad.RATE, grammar)
            if grammar
            else vosk.KaldiRecognizer(model, vad.RATE)
        )
        return Recognizer(rec)

    def release(
        self, language: str, grammar: str | None, rec: Recognizer, *, reuse: bool = True
    ) -> None:
        """Take ``rec`` back; one that may be reused is finished first (on the caller's
        thread: it may decode a few frames), so no stream's state reaches the next."""
        if reuse and grammar is None:
            rec.finish()
        with self._lock:
            self.in_use -= 1
            self._note_locked()
            reusable = reuse and grammar is None and rec.fed < self._max_audio
            if reusable and self._room_locked(language):
                rec.idle_since = time.monotonic()
                self._idle.setdefault(language, []).append(rec)
                return
            self.retired += 1
        # Grammar recognizers are per stream; worn or surplus ones go. Dropping the last
        # reference frees the Kaldi objects now; glibc keeps the pages unless trimmed.
        del rec
        _trim_heap()

    # --- warming and shrinking (call on a worker thread: both take Vosk time) ---

    def warm_up(self, language: str, pcm: bytes) -> None:
        """Build one recognizer, decode ``pcm`` (16 kHz s16le) with it and keep it idle:
        its graph cache then holds the common paths, so the first utterances after
        start-up do not pay the cold price."""
        pooled = self._create(language, None)
        for i in range(0, len(pcm), vad.RATE // 5):
            pooled.accept(pcm[i : i + vad.RATE // 5])
        pooled.final_result()
        pooled.fed += len(pcm) / 2 / vad.RATE
        pooled.idle_since = time.monotonic()
        with self._lock:
            self.created += 1
            self._idle.setdefault(language, []).append(pooled)

    def refresh(self, language: str, pcm: bytes, worn_seconds: float, idle_seconds: float) -> bool:
        """Replace the idle recognizer of ``language`` that decoded the most audio, if
        that is over ``worn_seconds`` and it has not been used for ``idle_seconds``, by
        a new one warmed with ``pcm``; True if one was. A kept recognizer's graph cache
        grows with all it decodes (about +30 MiB after 10 s of speech, +211 MiB after
        145 s) and is freed only with it; one in steady use keeps its warm cache.
        """
        now = time.monotonic()
        with self._lock:
            idle = [
                r
                for r in self._idle.get(language, [])
                if r.fed > worn_seconds and now - r.idle_since >= idle_seconds
            ]
            if not idle:
                return False
            worn = max(idle, key=lambda r: r.fed)
            self._idle[language].remove(worn)
            self.retired += 1
        del worn, idle
        _trim_heap()
        self.warm_up(language, pcm)
        return True

    def shrink(self) -> int:
        """Let idle recognizers beyond the recent peak (or the memory budget) go, those
        that decoded the most audio first (the largest graph caches: after a peak the
        ones kept are warm but small); returns how many went."""
        gone: list[Recognizer] = []
        with self._lock:
            keep = self._target_locked() - self.in_use
            over = self._memory is not None and self._memory.idle_over_budget() is not None
            for idle in self._idle.values():
                idle.sort(key=lambda r: -r.fed)  # acquire pops from the end: the smallest
                while idle and (sum(len(v) for v in self._idle.values()) > max(keep, 0) or over):
                    gone.append(idle.pop(0))
                    over = False  # one at a time past the budget: RSS is re-read next call
            self.retired += len(gone)
        count = len(gone)
        if gone:
            gone.clear()  # the last references: Kaldi frees them here
            _trim_heap()
        return count

    def clear(self) -> int:
        """Let every idle recognizer go (the engine is closing); returns how many went.
        Recognizers still in use go when their streams give them back."""
        with self._lock:
            gone = [rec for idle in self._idle.values() for rec in idle]
            self._idle.clear()
            self.retired += len(gone)
        count = len(gone)
        gone.clear()  # the last references: Kaldi frees them here
        _trim_heap()
        return count

    def below_floor(self) -> bool:
        """Fewer recognizers kept (idle + in use) than ``warm``, with memory to spare:
        worn ones retired at release, or dropped over the memory budget, leave the
        warm floor short until one is warmed again."""
        with self._lock:
            kept = self.in_use + sum(len(v) for v in self._idle.values())
            if kept >= self.warm:
                return False
        return self._memory is None or self._memory.idle_over_budget() is None

    def surplus(self) -> int:
        """Idle recognizers ``shrink`` would let go now (memory aside)."""
        with self._lock:
            keep = self._target_locked() - self.in_use
            return max(0, sum(len(v) for v in self._idle.values()) - max(keep, 0))

    def idle(self, language: str) -> list[Recognizer]:
        """A snapshot of the idle recognizers of ``language`` (for health checks, tests)."""
        with self._lock:
            return list(self._idle.get(language, []))

    def idle_count(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._idle.values())

    def stats(self) -> dict[str, int]:
        with self._lock:
            self._note_locked()
            return {
                "idle": sum(len(v) for v in self._idle.values()),
                "in_use": self.in_use,
                "created": self.created,
                "retired": self.retired,
                "peak": max(n for _, n in self._peaks),
            }


def warm_audio(path: Path | None) -> bytes:
    """``WARM_SECONDS`` of 16 kHz s16le audio to warm recognizers with: the start of
    ``path`` (a 16-bit PCM WAV at any rate, mono or not: ideally speech in the model's
    language), or without one a synthetic voiced signal. Measured on the Korean model:
    after 3 s of real speech the next utterances cost 0.16 CPU-s per audio second,
    after this synthetic signal 0.20, cold 0.33."""
    if path is not None:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2:
                raise ValueError(f"{path}: warm audio must be a 16-bit PCM WAV")
            rate, channels = w.getframerate(), w.getnchannels()
            data = w.readframes(int(WARM_SECONDS * rate))
        samples = np.frombuffer(data, dtype="<i2").reshape(-1, channels)[:, 0]
        if rate != vad.RATE:
            samples = soxr.resample(samples, rate, vad.RATE)
        return samples.astype("<i2").tobytes()
    # A gliding, syllable-modulated pitch with a little noise: exercises more of the
    # graph than silence or white noise (measured: noise warms to 0.24 only).
    rng = np.random.default_rng(0)
    t = np.arange(int(WARM_SECONDS * vad.RATE)) / vad.RATE
    pitch = 150 + 50 * np.sin(2 * np.pi * 3 * t)
    voiced = np.sin(2 * np.pi * pitch * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
    signal = 3000 * voiced + rng.normal(0, 300, t.size)
    return signal.astype("<i2").tobytes()


def _trim_heap() -> None:
    """Give freed heap pages back to the system (glibc only; a no-op elsewhere)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6")
except OSError:  # not glibc
    _LIBC = None
