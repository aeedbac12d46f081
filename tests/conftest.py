"""Shared fixtures: settings, the reference speech, one loaded Korean engine per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from bots.captioner.corpus import CorpusMissing, Utterance, load_corpus
from bots.captioner.engine import Engine
from bots.captioner.models import ModelRegistry
from orchestrator.settings import Settings, load_settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def speech_dir(settings: Settings) -> Path:
    return settings.speech_dir


def _corpus(speech_dir: Path, language: str) -> list[Utterance]:
    try:
        return load_corpus(speech_dir, language)
    except CorpusMissing as exc:
        pytest.skip(f"reference speech not available: {exc}")


@pytest.fixture(scope="session")
def ko_corpus(speech_dir: Path) -> list[Utterance]:
    return _corpus(speech_dir, "ko")


@pytest.fixture(scope="session")
def en_corpus(speech_dir: Path) -> list[Utterance]:
    return _corpus(speech_dir, "en")


@pytest.fixture(scope="session")
def engine(settings: Settings) -> Iterator[Engine]:
    """The Korean model loaded once for the whole run (2 s, ~520 MB)."""
    eng = Engine(settings.captioner, ModelRegistry(settings.models))
    eng.models.get("ko")
    yield eng
    eng.close()


def read_pcm(path: Path, rate: int | None = None) -> tuple[bytes, int]:
    """A recording as s16le mono bytes, resampled to ``rate`` when given."""
    audio, native = sf.read(str(path), dtype="int16", always_2d=False)
    if audio.ndim > 1:
        audio = audio.mean(axis=1).astype(np.int16)
    if rate is not None and rate != native:
        audio = soxr.resample(audio, native, rate).astype(np.int16)
        native = rate
    return audio.tobytes(), native
