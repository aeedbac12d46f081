"""The recognition engine on real Korean speech: VAD gating, prompt finals, any input rate."""

from __future__ import annotations

import gc
import json
import weakref
from pathlib import Path

import numpy as np
import pytest
from aiohttp.test_utils import TestServer

from bench.harness.audio import read_pcm
from bench.harness.netutil import free_port
from bots.captioner.app import create_app as create_captioner
from bots.captioner.captioner_keys import engine_key
from bots.captioner.engine import Engine
from bots.captioner.recognizers import RecognizerPool
from bots.captioner.vosk_models import ModelError, ModelRegistry
from plenary.corpus import Utterance
from plenary.events import CaptionEvent, clean_text
from plenary.scoring import cer
from plenary.settings import Settings


async def feed_all(stream, pcm: bytes, rate: int, seconds: float = 0.2):  # type: ignore[no-untyped-def]
    step = int(rate * seconds) * 2
    finals = []
    for i in range(0, len(pcm), step):
        result = await stream.feed(pcm[i : i + step])
        finals += result.finals
    return finals


def test_clean_text_unbrackets_numbers() -> None:
    assert clean_text("고객님 [7] 년전  이지만") == "고객님 7 년전 이지만"
    assert clean_text("  ") == ""


async def test_silence_costs_no_decode_and_holds_no_recognizer(engine: Engine) -> None:
    created = engine.recognizers.created
    async with engine.open_stream("file") as lease:
        stream = lease.open_transcriber(sample_rate=48000, language="ko", room="r", speaker="quiet")
        rng = np.random.default_rng(0)
        for _ in range(60):  # a minute of an open microphone in a quiet room, Jigasi-sized frames
            frame = rng.normal(0, 30, 24000).astype("<i2").tobytes()
            result = await stream.feed(frame)
            assert not result.finals and result.partial is None
    assert stream.decoded_seconds == 0
    assert not stream.in_utterance
    assert engine.recognizers.created == created
    assert stream.audio_seconds == pytest.approx(30.0)


async def test_final_arrives_after_trailing_silence_without_eof(
    engine: Engine, ko_corpus: list[Utterance]
) -> None:
    events: list[CaptionEvent] = []
    pcm, rate = read_pcm(ko_corpus[2].path)
    async with engine.open_stream("file") as lease:
        stream = lease.open_transcriber(
            sample_rate=rate, language="ko", room="hall", speaker="pfa", sink=events.append
        )
        finals = await feed_all(stream, pcm, rate)
        # The configured trailing silence (+ one 0.2 s chunk) releases the final by itself.
        silence = engine.settings.vad_silence_ms / 1000 + 0.2
        finals += await feed_all(stream, b"\0" * int(rate * silence) * 2, rate)
    assert finals, f"no final within {silence} s of trailing silence"
    assert not stream.in_utterance
    final = finals[-1].event
    assert final.is_final and final.room == "hall" and final.speaker == "pfa"
    assert final.language == "ko"
    assert "[" not in final.text
    partials = [e for e in events if not e.is_final]
    assert partials, "no partial results while speaking"
    assert {p.message_id for p in partials if p.start == final.start} <= {final.message_id}
    assert all(e.message_id == final.message_id for e in partials if e.end > final.start)
    assert cer([(ko_corpus[2].text, " ".join(f.event.text for f in finals))]) < 0.6


async def test_recognizers_are_returned_and_reused(
    engine: Engine, ko_corpus: list[Utterance]
) -> None:
    pcm, rate = read_pcm(ko_corpus[0].path)
    for n in range(3):
        async with engine.open_stream("file") as lease:
            stream = lease.open_transcriber(
                sample_rate=rate, language="ko", room="r", speaker=f"s{n}"
            )
            await feed_all(stream, pcm, rate)
            await stream.flush()
            assert not stream.in_utterance
    before = engine.recognizers.created
    async with engine.open_stream("file") as lease:
        stream = lease.open_transcriber(sample_rate=rate, language="ko", room="r", speaker="again")
        await feed_all(stream, pcm, rate)
        await stream.flush()
    assert engine.recognizers.created == before
    assert engine.recognizers.idle_count() >= 1


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
async def test_any_input_rate(engine: Engine, ko_corpus: list[Utterance], rate: int) -> None:
    utt = ko_corpus[5]
    pcm, rate = read_pcm(utt.path, rate)
    async with engine.open_stream("file") as lease:
        stream = lease.open_transcriber(sample_rate=rate, language="ko", room="r", speaker="s")
        finals = await feed_all(stream, pcm, rate)
        finals += (await stream.flush()).finals
    text = " ".join(f.event.text for f in finals)
    assert text
    assert cer([(utt.text, text)]) < (0.8 if rate == 8000 else 0.6)


async def test_word_times_are_on_the_stream_clock(
    engine: Engine, ko_corpus: list[Utterance]
) -> None:
    first, _ = read_pcm(ko_corpus[0].path, 16000)
    second, _ = read_pcm(ko_corpus[1].path, 16000)
    gap = b"\0" * 16000 * 2  # one second
    async with engine.open_stream("file") as lease:
        stream = lease.open_transcriber(sample_rate=16000, language="ko", room="r", speaker="s")
        finals = await feed_all(stream, gap + first + gap + second + gap, 16000)
    assert len(finals) >= 2
    second_starts = (len(gap) * 2 + len(first)) / 2 / 16000
    last = finals[-1].event
    assert last.start >= second_starts - 0.35
    assert last.words and all(
        a.start <= b.start for a, b in zip(last.words, last.words[1:], strict=False)
    )
    assert finals[0].event.end <= second_starts


def test_model_errors_name_the_path_and_the_fix(tmp_path: Path) -> None:
    registry = ModelRegistry({"en": tmp_path / "missing", "de": tmp_path})
    with pytest.raises(ModelError, match="missing.*download a Vosk model"):
        registry.get("en")
    with pytest.raises(ModelError, match="no am/final.mdl"):
        registry.get("de")
    with pytest.raises(ModelError, match="no Vosk model configured for language 'xx'"):
        registry.get("xx")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelError, match="not a folder"):
        ModelRegistry({"fr": tmp_path / "file"}).get("fr")


async def test_worn_recognizers_are_retired_and_memory_trimmed(
    engine: Engine, ko_corpus: list[Utterance]
) -> None:
    from plenary.settings import CaptionerSettings

    worn = Engine(
        CaptionerSettings(recognizer_max_audio_seconds=10, warm_recognizers=1), engine.models
    )
    try:
        pcm, rate = read_pcm(ko_corpus[2].path)  # ~7 s of speech
        for n in range(3):
            async with worn.open_stream("file") as lease:
                stream = lease.open_transcriber(
                    sample_rate=rate, language="ko", room="r", speaker=f"{n}"
                )
                await feed_all(stream, pcm, rate)
                await stream.flush()
        stats = worn.recognizers.stats()
        assert stats["in_use"] == 0
        assert stats["retired"] >= 1  # 14 s of speech exceeds the 10 s budget
        assert stats["idle"] <= 1
        assert stats["created"] == stats["retired"] + stats["idle"]
    finally:
        worn.close()


async def test_a_pause_within_the_hold_keeps_the_recognizer_warm(
    engine: Engine, ko_corpus: list[Utterance]
) -> None:
    """The final comes at the VAD's end; the recognizer stays, fed the pause, for
    ``vad_hold_ms``; speech resuming continues on it; after the hold it goes back."""
    hold = engine.settings.vad_hold_ms / 1000
    assert hold >= 1.0
    first, _ = read_pcm(ko_corpus[0].path, 16000)
    second, _ = read_pcm(ko_corpus[1].path, 16000)
    pause = b"\0" * int(16000 * (engine.settings.vad_silence_ms / 1000 + 0.4)) * 2
    in_use = engine.recognizers.in_use
    async with engine.open_stream("file") as lease:
        stream = lease.open_transcriber(sample_rate=16000, language="ko", room="r", speaker="h")
        finals = await feed_all(stream, first + pause, 16000)
        assert finals, "no final at the VAD's end of the first sentence"
        assert stream.holds_recognizer and not stream.in_utterance
        assert engine.recognizers.in_use == in_use + 1
        decoded = stream.decoded_seconds
        more = await feed_all(stream, second, 16000)
        # All of it, and the pre-roll (300 ms) again after the pause Vosk made of it is dropped.
        resumed_seconds = stream.decoded_seconds - decoded
        assert len(second) / 32000 - 0.05 <= resumed_seconds <= len(second) / 32000 + 0.35
        more += await feed_all(stream, b"\0" * int(16000 * (hold + 1.0)) * 2, 16000)
        assert more, "no final for the sentence after the pause"
        assert not stream.holds_recognizer
        assert engine.recognizers.in_use == in_use
    assert not any(r.open for r in engine.recognizers.idle("ko"))
    resumed = more[0].event
    assert resumed.message_id != finals[-1].event.message_id
    assert resumed.start >= (len(first) + len(pause)) / 32000 - 0.35  # same stream clock


def test_a_recognizer_goes_back_to_the_pool_finished(
    engine: Engine, ko_corpus: list[Utterance]
) -> None:
    """Vosk's FinalResult() does nothing after Result() with no audio since: pooled like
    that, a recognizer would carry one stream's feature pipeline (CMVN, i-vector) to the
    next stream that borrows it. The pool finishes it first."""
    pool = RecognizerPool(engine.models, warm=1, max_audio_seconds=600)
    pcm, _ = read_pcm(ko_corpus[0].path, 16000)
    rec = pool.acquire("ko", None)
    rec.accept(pcm)
    assert json.loads(rec.result())["text"]
    assert json.loads(rec.final_result())["text"] == ""  # Vosk's no-op: why finish exists
    assert rec.open
    pool.release("ko", None, rec)
    assert pool.idle("ko") == [rec]
    assert not rec.open
    again = pool.acquire("ko", None)
    assert again is rec
    again.accept(pcm)  # decodes from a fresh feature pipeline
    assert json.loads(again.final_result())["text"]
    assert not again.open


async def test_a_stopped_captioner_lets_go_of_its_model_and_recognizers(
    settings: Settings,
) -> None:
    """A process that runs the captioner more than once (``plenary demo``, an embedding
    program) gets the model's memory back when it stops, although aiohttp keeps the
    stopped Application referenced (its middleware cache)."""
    app = create_captioner(settings)
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    engine = app[engine_key]
    language = settings.captioner.default_language
    model = weakref.ref(engine.models.get(language))
    assert engine.recognizers.idle(language)  # warmed at start-up
    recognizer = weakref.ref(engine.recognizers.idle(language)[0].rec)
    await server.close()
    gc.collect()
    assert recognizer() is None
    assert model() is None
    assert app[engine_key] is engine  # the app itself is still there
