"""Recordings as raw PCM for the tests and benchmarks that stream them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr


def read_pcm(path: Path, rate: int | None = None) -> tuple[bytes, int]:
    """A recording as s16le mono bytes, resampled to ``rate`` when given."""
    audio, native = sf.read(str(path), dtype="int16", always_2d=False)
    if audio.ndim > 1:
        audio = audio.mean(axis=1).astype(np.int16)
    if rate is not None and rate != native:
        audio = soxr.resample(audio, native, rate).astype(np.int16)
        native = rate
    return audio.tobytes(), native
