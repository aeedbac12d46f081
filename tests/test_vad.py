"""The voice-activity segmenter on synthetic silence/noise and on real speech."""

from __future__ import annotations

import numpy as np

from bench.harness.audio import read_pcm
from bots.captioner import vad
from plenary.corpus import Utterance


def noise(seconds: float, dbfs: float, seed: int = 1) -> bytes:
    rng = np.random.default_rng(seed)
    rms = 32768 * 10 ** (dbfs / 20)
    samples = rng.normal(0, rms, int(seconds * vad.RATE))
    return np.clip(samples, -32768, 32767).astype("<i2").tobytes()


def test_digital_silence_never_starts_an_utterance() -> None:
    seg = vad.Segmenter()
    assert seg.push(b"\0" * vad.RATE * 2 * 10) == []
    assert not seg.active
    assert seg.speech_frames == 0


def test_quiet_room_noise_is_gated_before_the_vad() -> None:
    seg = vad.Segmenter(energy_floor_dbfs=-50)
    assert seg.push(noise(10, -60)) == []
    assert seg.speech_frames == 0


def test_steady_noise_above_the_floor_is_rejected() -> None:
    seg = vad.Segmenter(aggressiveness=3, energy_floor_dbfs=-70)
    actions = seg.push(noise(10, -45))
    assert not any(isinstance(a, vad.Start) for a in actions)


def test_odd_chunk_sizes_are_carried_over() -> None:
    seg = vad.Segmenter()
    for size in (1, 959, 961, 3, 10_001):
        seg.push(b"\0" * (size - size % 2))
    assert seg.skipped_frames > 0


def test_real_utterance_starts_and_ends_promptly(ko_corpus: list[Utterance]) -> None:
    pcm, _ = read_pcm(ko_corpus[0].path, vad.RATE)
    seg = vad.Segmenter(silence_ms=400)
    actions = seg.push(b"\0" * 16000 + pcm + b"\0" * 64000)
    starts = [a for a in actions if isinstance(a, vad.Start)]
    ends = [a for a in actions if isinstance(a, vad.End)]
    assert starts and ends
    speech_end = (16000 + len(pcm)) // 2
    # The utterance closes at most the silence window (+ a frame) after the audio ends.
    assert ends[-1].sample <= speech_end + vad.RATE * 0.43
    assert starts[0].sample >= 16000 // 2 - vad.RATE * 1.0  # the pre-roll: up to 1 s
    assert not seg.active


def test_long_speech_is_split_at_the_utterance_limit(ko_corpus: list[Utterance]) -> None:
    longest = max(ko_corpus, key=lambda u: u.path.stat().st_size)
    pcm, _ = read_pcm(longest.path, vad.RATE)
    seg = vad.Segmenter(max_utterance_s=2.0, silence_ms=2000)
    actions = seg.push(pcm)
    assert sum(isinstance(a, vad.End) for a in actions) >= 2


def test_speech_over_steady_noise_is_still_found(ko_corpus: list[Utterance]) -> None:
    pcm, _ = read_pcm(ko_corpus[0].path, vad.RATE)
    speech = np.frombuffer(pcm, dtype="<i2").astype(np.int32)
    hiss = np.frombuffer(noise(len(speech) / vad.RATE + 6, -45), dtype="<i2").astype(np.int32)
    mixed = hiss.copy()
    mixed[3 * vad.RATE : 3 * vad.RATE + len(speech)] += speech
    seg = vad.Segmenter(energy_floor_dbfs=-70)
    actions = seg.push(np.clip(mixed, -32768, 32767).astype("<i2").tobytes())
    starts = [a for a in actions if isinstance(a, vad.Start)]
    assert len(starts) >= 1
    assert starts[0].sample >= 2.5 * vad.RATE  # not before the speech, despite the hiss


def test_the_pause_after_an_utterance_is_passed_on_for_the_hold(
    ko_corpus: list[Utterance],
) -> None:
    pcm, _ = read_pcm(ko_corpus[0].path, vad.RATE)
    seg = vad.Segmenter(silence_ms=500, hold_ms=1500)
    actions = seg.push(pcm + b"\0" * vad.RATE * 2 * 3)
    kinds = [type(a) for a in actions]
    assert kinds.count(vad.End) >= 1 and kinds[-1] is vad.Release
    end = max(i for i, k in enumerate(kinds) if k is vad.End)
    after = actions[end + 1 : -1]
    assert all(isinstance(a, vad.Audio) for a in after)
    held = sum(len(a.pcm) for a in after if isinstance(a, vad.Audio)) // 2
    assert held == round(1500 / 30) * vad.FRAME_SAMPLES  # the whole hold, nothing after it
    assert isinstance(actions[-1], vad.Release) and isinstance(actions[end], vad.End)
    assert actions[-1].sample - actions[end].sample == held
    assert not seg.holding


def test_speech_within_the_hold_resumes_without_a_release(ko_corpus: list[Utterance]) -> None:
    first, _ = read_pcm(ko_corpus[0].path, vad.RATE)
    second, _ = read_pcm(ko_corpus[1].path, vad.RATE)
    pause = b"\0" * int(vad.RATE * 0.9) * 2  # past silence_ms, within hold_ms
    seg = vad.Segmenter(silence_ms=500, hold_ms=2000)
    actions = seg.push(first + pause + second)
    starts = [a for a in actions if isinstance(a, vad.Start)]
    assert len(starts) >= 2 and any(isinstance(a, vad.End) for a in actions)
    assert not any(isinstance(a, vad.Release) for a in actions)
    assert starts[-1].pcm  # the pre-roll again, though it was passed on as the pause
    assert isinstance(seg.end()[-1], vad.Release)  # eof ends the utterance and the hold


def test_without_a_hold_every_end_is_released_at_once(ko_corpus: list[Utterance]) -> None:
    pcm, _ = read_pcm(ko_corpus[0].path, vad.RATE)
    seg = vad.Segmenter(silence_ms=500, hold_ms=0)
    actions = seg.push(pcm + b"\0" * vad.RATE * 2)
    for i, action in enumerate(actions):
        if isinstance(action, vad.End):
            assert isinstance(actions[i + 1], vad.Release)
    assert seg.end() == []


def test_the_pre_roll_is_a_second_over_noise_and_short_over_quiet(
    ko_corpus: list[Utterance],
) -> None:
    """Over noise a cold recognizer gets a second of it before the onset (its CMVN and
    i-vector adapt to the channel); over a near-silent background only 0.3 s."""
    pcm, _ = read_pcm(ko_corpus[0].path, vad.RATE)
    speech = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    for dbfs, expected in ((-55.0, 1.0), (-70.0, 0.3)):
        background = np.frombuffer(noise(2.0 + len(speech) / vad.RATE, dbfs), dtype="<i2")
        mixed = background.astype(np.float64)
        mixed[2 * vad.RATE :] += speech
        seg = vad.Segmenter(preroll_ms=1000, quiet_preroll_ms=300)
        actions = seg.push(np.clip(mixed, -32768, 32767).astype("<i2").tobytes())
        start = next(a for a in actions if isinstance(a, vad.Start))
        seconds = len(start.pcm) / 2 / vad.RATE
        assert abs(seconds - expected) < 0.05, (dbfs, seconds)
        assert start.sample + len(start.pcm) // 2 > 2 * vad.RATE  # ends at the onset
