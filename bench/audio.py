"""Benchmark audio: the shared Korean recordings as s16le PCM at any rate, and noise.

Every benchmark, against every server, uses exactly these bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import soundfile as sf
import soxr

from plenary.corpus import Utterance, load_corpus
from plenary.settings import Settings

# A 10 ms window louder than this (RMS, dBFS) counts as speech when locating the
# last spoken sample; the studio recordings' silences sit at -65 to -90 dBFS.
SPEECH_DBFS = -50.0


@dataclass(frozen=True, slots=True)
class Clip:
    id: str
    text: str
    speaker: str
    pcm: np.ndarray  # int16 mono
    rate: int
    last_speech: int  # sample index just after the last speech window

    @property
    def seconds(self) -> float:
        return len(self.pcm) / self.rate


def corpus(settings: Settings, language: str = "ko") -> list[Utterance]:
    return load_corpus(settings.speech_dir, language)


@lru_cache(maxsize=512)
def _read(path: str, rate: int) -> np.ndarray:
    data, native = sf.read(path, dtype="int16", always_2d=True)
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1).astype(np.int16)
    if native == rate:
        return np.ascontiguousarray(mono)
    return soxr.resample(mono, native, rate).astype(np.int16)


def last_speech_sample(pcm: np.ndarray, rate: int) -> int:
    window = max(1, rate // 100)
    n = len(pcm) // window
    if n == 0:
        return len(pcm)
    frames = pcm[: n * window].astype(np.float32).reshape(n, window)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    loud = np.nonzero(rms >= 32768.0 * 10 ** (SPEECH_DBFS / 20))[0]
    return int((loud[-1] + 1) * window) if len(loud) else len(pcm)


def clips(utterances: list[Utterance], rate: int) -> list[Clip]:
    out = []
    for u in utterances:
        pcm = _read(str(u.path), rate)
        out.append(Clip(u.id, u.text, u.speaker, pcm, rate, last_speech_sample(pcm, rate)))
    return out


def frames(pcm: np.ndarray, rate: int, seconds: float) -> list[bytes]:
    """Split into frames of ``seconds`` (the last one shorter), as test.py reads a WAV."""
    size = int(rate * seconds)
    data = pcm.astype("<i2").tobytes()
    return [data[i : i + size * 2] for i in range(0, len(data), size * 2)]


def white_noise(seconds: float, rate: int, dbfs: float, seed: int = 7) -> np.ndarray:
    """Gaussian white noise with RMS at ``dbfs`` (relative to 32768), int16."""
    rng = np.random.default_rng(seed)
    sigma = 32768.0 * 10 ** (dbfs / 20)
    noise = rng.normal(0.0, sigma, int(seconds * rate))
    return np.clip(np.round(noise), -32768, 32767).astype(np.int16)
