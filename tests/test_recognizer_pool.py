"""The recognizer pool on the real Korean model: warmed at start-up, sized by the recent
peak of concurrent utterances, shrunk back after it, and bounded by the memory budget."""

from __future__ import annotations

import asyncio
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from bench.harness.audio import read_pcm
from bots.captioner.engine import Engine
from bots.captioner.recognizers import WARM_SECONDS, warm_audio
from plenary.corpus import Utterance
from plenary.settings import CaptionerSettings


async def speak(engine: Engine, pcm: bytes, rate: int, name: str) -> int:
    """One stream says ``pcm`` and ends (eof); returns how many finals it got."""
    finals = 0
    async with engine.open_stream("file") as lease:
        stream = lease.open_transcriber(sample_rate=rate, language="ko", room="r", speaker=name)
        step = int(rate * 0.2) * 2
        for i in range(0, len(pcm), step):
            finals += len((await stream.feed(pcm[i : i + step])).finals)
        finals += len((await stream.flush()).finals)
    return finals


async def test_start_up_warms_recognizers_that_have_decoded_audio(
    engine: Engine, ko_corpus: list[Utterance]
) -> None:
    # No memory limit: this process may be past 75 % of the default after other modules,
    # and the pool then keeps no idle recognizer (the last test here checks that).
    warm = Engine(CaptionerSettings(warm_recognizers=2, max_rss_mb=0), engine.models)
    try:
        await warm.preload(["ko"])
        pool = warm.recognizers
        assert pool.idle_count() == 2 and pool.created == 2
        # Each warm recognizer has decoded the warm-up audio (its graph cache is built).
        assert all(r.fed == WARM_SECONDS for r in pool.idle("ko"))
        pcm, rate = read_pcm(ko_corpus[2].path)
        assert await speak(warm, pcm, rate, "first") >= 1
        assert pool.created == 2  # the first speaker got a warm recognizer, not a new one
        assert pool.idle_count() == 2
    finally:
        warm.close()


async def test_pool_grows_to_the_peak_and_the_engine_shrinks_it_back_after(
    engine: Engine, ko_corpus: list[Utterance]
) -> None:
    # The window is long enough for the peak to still be recent when the speakers end,
    # even on a loaded machine (4 times 3 s of speech decoded as fast as 2 threads go).
    peaky = Engine(
        CaptionerSettings(warm_recognizers=1, warm_peak_seconds=20.0, max_rss_mb=0), engine.models
    )
    upkeep: asyncio.Task[None] | None = None
    try:
        await peaky.preload(["ko"])  # warms one
        upkeep = asyncio.create_task(peaky.upkeep())  # as the captioner app runs it
        pool = peaky.recognizers
        pcm, rate = read_pcm(ko_corpus[2].path)
        pcm = pcm[: rate * 2 * 3]  # 3 s each
        await asyncio.gather(*(speak(peaky, pcm, rate, f"s{i}") for i in range(4)))
        peak = pool.stats()["peak"]  # utterances open at once: up to 4, as the VAD cut them
        assert peak >= 2
        assert pool.idle_count() == peak == pool.created  # all kept warm for the next peak
        assert pool.retired == 0
        deadline = time.monotonic() + 40
        while pool.idle_count() > 1:  # the peak leaves the window: the surplus goes
            assert time.monotonic() < deadline, pool.stats()
            await asyncio.sleep(0.5)
        assert pool.retired == peak - 1
        assert pool.stats()["peak"] <= 1
    finally:
        if upkeep is not None:
            upkeep.cancel()
        peaky.close()


async def test_no_idle_recognizer_is_kept_over_the_memory_budget(
    engine: Engine, ko_corpus: list[Utterance]
) -> None:
    bounded = Engine(CaptionerSettings(warm_recognizers=4), engine.models)
    try:
        # A limit whose idle budget (75 %) the process is already over, but below which
        # recognizers in use are still built (RSS under the limit itself).
        rss = bounded.memory.rss_mb()
        bounded.settings = bounded.settings.model_copy(update={"max_rss_mb": int(rss / 0.8)})
        assert bounded.memory.idle_over_budget() and not bounded.memory.over_limit()
        pcm, rate = read_pcm(ko_corpus[2].path)
        pcm = pcm[: rate * 2 * 3]
        await asyncio.gather(*(speak(bounded, pcm, rate, f"s{i}") for i in range(2)))
        pool = bounded.recognizers
        assert pool.in_use == 0 and pool.idle_count() == 0
        assert pool.retired == pool.created == 2
    finally:
        bounded.close()


async def test_a_worn_idle_recognizer_is_replaced_by_a_fresh_warm_one(
    engine: Engine, ko_corpus: list[Utterance]
) -> None:
    """After a busy spell the kept recognizer, whose graph cache grew with all it
    decoded, is swapped for a freshly warmed one while a thread is free."""
    settings = CaptionerSettings(
        warm_recognizers=1, warm_peak_seconds=6.0, warm_refresh_seconds=10.0, max_rss_mb=0
    )
    fresh = Engine(settings, engine.models)
    upkeep: asyncio.Task[None] | None = None
    try:
        await fresh.preload(["ko"])
        pool = fresh.recognizers
        (warmed,) = pool.idle("ko")
        pcm, rate = read_pcm(ko_corpus[2].path)  # ~7 s of speech, twice
        assert await speak(fresh, pcm + pcm, rate, "busy") >= 1
        (worn,) = pool.idle("ko")
        assert worn is warmed and worn.fed > 10.0
        upkeep = asyncio.create_task(fresh.upkeep())  # ticks every second here
        deadline = time.monotonic() + 30
        while pool.idle("ko") in ([worn], []):  # [] while the new one warms
            assert time.monotonic() < deadline, pool.stats()
            await asyncio.sleep(0.2)
        (replacement,) = pool.idle("ko")
        assert replacement is not worn and replacement.fed == WARM_SECONDS
        assert pool.retired == 1 and pool.created == 2
        await asyncio.sleep(2.5)  # a fresh one is not replaced again
        assert pool.idle("ko") == [replacement] and pool.retired == 1
        assert await speak(fresh, pcm, rate, "again") >= 1
        assert pool.created == 2  # the next speaker got the fresh warm one
        upkeep.cancel()
        # One in use since the last round keeps its warm cache, however much it decoded.
        assert not pool.refresh("ko", warm_audio(None), worn_seconds=0.0, idle_seconds=60.0)
        assert pool.created == 2
    finally:
        if upkeep is not None:
            upkeep.cancel()
        fresh.close()


def test_warm_audio_takes_the_start_of_any_16_bit_wav(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    stereo = (rng.normal(0, 3000, (22050 * 5, 2))).astype("<i2")
    path = tmp_path / "speech.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(22050)
        w.writeframes(stereo.tobytes())
    pcm = warm_audio(path)
    assert len(pcm) == int(WARM_SECONDS * 16000) * 2  # 3 s at 16 kHz, the first channel
    assert warm_audio(None) and len(warm_audio(None)) == len(pcm)  # the synthetic signal
    eight_bit = tmp_path / "u8.wav"
    with wave.open(str(eight_bit), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes(b"\x80" * 8000)
    with pytest.raises(ValueError, match="16-bit PCM WAV"):
        warm_audio(eight_bit)


async def test_the_warm_floor_is_made_up_after_a_worn_recognizer_is_retired(
    engine: Engine, ko_corpus: list[Utterance]
) -> None:
    """A recognizer past captioner.recognizer_max_audio_seconds is retired when given
    back; the upkeep warms a new one, so the next burst does not meet a cold pool."""
    settings = CaptionerSettings(
        warm_recognizers=2,
        warm_peak_seconds=6.0,
        recognizer_max_audio_seconds=10.0,
        warm_refresh_seconds=0.0,
        max_rss_mb=0,
    )
    floor = Engine(settings, engine.models)
    upkeep: asyncio.Task[None] | None = None
    try:
        await floor.preload(["ko"])
        pool = floor.recognizers
        pcm, rate = read_pcm(ko_corpus[2].path)  # ~7 s, twice: past the 10 s budget
        assert await speak(floor, pcm + pcm, rate, "long") >= 1
        assert pool.idle_count() == 1 and pool.retired == 1  # the worn one went
        upkeep = asyncio.create_task(floor.upkeep())
        deadline = time.monotonic() + 30
        while pool.idle_count() < 2:
            assert time.monotonic() < deadline, pool.stats()
            await asyncio.sleep(0.2)
        assert pool.created == 3
        assert all(r.fed == WARM_SECONDS for r in pool.idle("ko"))
        await asyncio.sleep(2.5)  # at the floor: nothing more is built
        assert pool.created == 3 and pool.idle_count() == 2
    finally:
        if upkeep is not None:
            upkeep.cancel()
        floor.close()
