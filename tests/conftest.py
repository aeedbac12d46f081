"""Shared fixtures: settings, the reference speech, one loaded Korean engine per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bots.captioner.engine import Engine
from bots.captioner.vosk_models import ModelRegistry
from plenary.corpus import CorpusMissing, Utterance, load_corpus
from plenary.settings import Settings, load_settings


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
