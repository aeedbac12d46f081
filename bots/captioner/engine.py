"""The recognition engine: shared models, a bounded thread pool, counted streams.

One ``Engine`` serves every stream of a process. ``Engine.open_stream`` admits a stream
(or raises ``Refused``) and returns its ``StreamLease``: the stream is counted in
``Engine.active_streams`` and the ``plenary_captioner_streams`` gauge from then until
the lease is closed, once, whichever way the stream ends. The pieces live beside it:
admission.py (the budget, fair shares, memory), recognizers.py (the Vosk pool),
stream.py (one stream's transcriber), vad.py (segmentation).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

from bots.captioner.admission import MemoryGuard, StreamBudget, StreamPath
from bots.captioner.recognizers import RecognizerPool, warm_audio
from bots.captioner.stream import EventSink, StreamTranscriber
from bots.captioner.vosk_models import ModelRegistry
from plenary.settings import CaptionerSettings


class Engine:
    """Shared by every stream of a process: models, pool of recognizers, threads, budget."""

    def __init__(self, settings: CaptionerSettings, models: ModelRegistry) -> None:
        self.settings = settings
        self.models = models
        self.threads = settings.threads or os.cpu_count() or 1
        self.executor = ThreadPoolExecutor(self.threads, thread_name_prefix="vosk")
        self.memory = MemoryGuard(lambda: self.settings.max_rss_mb)
        self.recognizers = RecognizerPool(
            models,
            warm=settings.warm_recognizers or 2 * self.threads,
            max_audio_seconds=settings.recognizer_max_audio_seconds,
            limit=settings.max_streams,
            memory=self.memory,
            peak_seconds=settings.warm_peak_seconds,
        )
        self.budget = StreamBudget(lambda: self.settings.max_streams, self.memory)
        self._warm: tuple[str, bytes] | None = None  # language and audio of warm-ups

    @property
    def active_streams(self) -> int:
        return self.budget.active

    def full_reason(self) -> str | None:
        """Why no new stream is taken now (every stream taken, or memory short): the same
        limits ``StreamBudget.admit`` refuses by, without counting anything."""
        limit = self.settings.max_streams
        if self.active_streams >= limit:
            return f"full: {self.active_streams} of {limit} streams (captioner.max_streams)"
        shed = self.memory.shed_reason()
        return f"full: {shed}" if shed else None

    def open_stream(
        self, path: StreamPath, *, group: str = "", group_limit: int = 0
    ) -> StreamLease:
        """Admit a stream for ``path`` (see ``StreamBudget.admit``; ``group`` is a bridge
        session), or raise Refused saying why. Close the lease when the stream ends."""
        return StreamLease(self, path, group, group_limit)

    async def preload(self, languages: Sequence[str], *, warm: bool = True) -> None:
        """Load the models; with ``warm``, warm ``captioner.warm_recognizers`` recognizers
        of the first language (each decodes a few seconds of audio, on every thread at
        once). ``upkeep`` (run by the captioner app) lets a peak's surplus go."""
        loop = asyncio.get_running_loop()
        for language in languages:
            await loop.run_in_executor(self.executor, self.models.get, language)
        if not warm or not languages:
            return
        pcm = warm_audio(self.settings.warm_audio)
        self._warm = (languages[0], pcm)
        pool = self.recognizers
        await asyncio.gather(
            *(
                loop.run_in_executor(self.executor, pool.warm_up, languages[0], pcm)
                for _ in range(pool.warm - pool.idle_count())
            )
        )

    async def upkeep(self) -> None:
        """Every few seconds, let idle recognizers beyond the recent peak go; or else,
        while a thread is free, warm one if the warm floor is short (worn ones retired
        at release leave it so), or replace one worn recognizer
        (``captioner.warm_refresh_seconds``), idle since the last round, by a fresh warm
        one. On a worker thread: freeing a recognizer and trimming the heap take
        milliseconds, a warm-up about a CPU-second."""
        loop = asyncio.get_running_loop()
        every = max(1.0, self.settings.warm_peak_seconds / 6)
        while True:
            await asyncio.sleep(every)
            pool = self.recognizers
            if pool.surplus() or self.memory.idle_over_budget():
                await loop.run_in_executor(self.executor, pool.shrink)
            elif self._warm is not None and pool.in_use < self.threads:
                language, pcm = self._warm
                worn = self.settings.warm_refresh_seconds
                if pool.below_floor():
                    await loop.run_in_executor(self.executor, pool.warm_up, language, pcm)
                elif worn > 0:
                    await loop.run_in_executor(
                        self.executor, pool.refresh, language, pcm, worn, every
                    )

    def close(self) -> None:
        """Stop the threads and let the idle recognizers go (the models stay with the
        registry's owner: ``ModelRegistry.close``)."""
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.recognizers.clear()


class StreamLease:
    """One admitted stream and the transcriber it holds; an async context manager.

    Opening counts the stream; ``close`` closes its transcriber (the recognizer goes
    back to the pool) and only then gives the stream back, exactly once however often
    it is called, and to its end even when the caller is cancelled.
    """

    def __init__(self, engine: Engine, path: StreamPath, group: str, group_limit: int) -> None:
        engine.budget.admit(path, group, group_limit)  # raises Refused: nothing to give back
        self._engine = engine
        self.path = path
        self.group = group
        self.transcriber: StreamTranscriber | None = None
        self._closing: asyncio.Future[None] | None = None

    @property
    def closed(self) -> bool:
        return self._closing is not None

    def open_transcriber(
        self,
        *,
        sample_rate: float,
        language: str,
        room: str,
        speaker: str,
        max_alternatives: int = 0,
        phrase_list: Sequence[str] | None = None,
        sink: EventSink | None = None,
    ) -> StreamTranscriber:
        """The stream's transcriber (one at a time); the lease closes it."""
        if self._closing is not None:
            raise RuntimeError("the stream is closed")
        if self.transcriber is not None:
            raise RuntimeError("the stream already has a transcriber")
        engine = self._engine
        self.transcriber = StreamTranscriber(
            engine.settings,
            engine.recognizers,
            engine.executor,
            sample_rate=sample_rate,
            language=language,
            room=room,
            speaker=speaker,
            max_alternatives=max_alternatives,
            phrase_list=phrase_list,
            sink=sink,
        )
        return self.transcriber

    async def close_transcriber(self) -> None:
        """Close the transcriber without a result and keep the stream (a new config)."""
        if self.transcriber is not None:
            await self.transcriber.close()
            self.transcriber = None  # not before: a cancelled close is finished by ``close``

    async def close(self) -> None:
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        try:
            await self.close_transcriber()
        finally:
            self._engine.budget.release(self.path, self.group)

    async def __aenter__(self) -> StreamLease:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
