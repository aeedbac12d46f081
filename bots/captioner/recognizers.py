"""The pool of Vosk recognizers shared by every stream, per language."""

from __future__ import annotations

import ctypes
import threading

import vosk

from bots.captioner import vad
from bots.captioner.admission import MemoryGuard, Refused
from bots.captioner.vosk_models import ModelRegistry


class Recognizer:
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
        self._idle: dict[str, list[Recognizer]] = {}
        self._lock = threading.Lock()
        self.created = 0
        self.retired = 0
        self.in_use = 0

    def acquire(self, language: str, grammar: str | None) -> Recognizer:
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
