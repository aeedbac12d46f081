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


async def speak_over_vosk(url: str, path: Path) -> None:
    """One recording over a vosk websocket (``url`` with its query), as Jigasi sends it:
    16 kHz PCM in 0.2 s frames, half a second of silence after it, then eof."""
    import json

    import aiohttp

    pcm, rate = read_pcm(path, 16000)
    pcm += b"\0" * 16000
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await ws.send_str(json.dumps({"config": {"sample_rate": rate}}))
        for i in range(0, len(pcm), 6400):
            await ws.send_bytes(pcm[i : i + 6400])
            await ws.receive_str()
        await ws.send_str('{"eof" : 1}')
        await ws.receive_str()
