"""`plenary transcribe` on real Korean recordings, in-process and as a real command."""

from __future__ import annotations

import html
import io
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import webvtt

from bots.captioner import audio, transcribe
from bots.captioner.engine import Engine
from plenary.compose.cli import main
from plenary.corpus import Utterance
from plenary.scoring import cer

pytestmark = pytest.mark.speech

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
HANGUL = re.compile("[가-힣]")
# Per-recording CER here is noisy (one utterance); this only says "recognized Korean speech".
PLAUSIBLE_CER = 0.5


@pytest.fixture
def shared_model(monkeypatch: pytest.MonkeyPatch, engine: Engine) -> None:
    """Let in-process runs reuse the session's loaded Korean model instead of loading their own."""
    monkeypatch.setattr(
        transcribe.ModelRegistry, "for_settings", lambda settings, paths=None: engine.models
    )


@pytest.fixture(scope="module")
def utt(ko_corpus: list[Utterance]) -> Utterance:
    """Uses a number ("칠년 전", which the model writes as "7 년전")."""
    return next(u for u in ko_corpus if u.id == "pfa00003")


@pytest.fixture(scope="module")
def utt2(ko_corpus: list[Utterance]) -> Utterance:
    return next(u for u in ko_corpus if u.id == "pmc00002")


def _assert_plausible(reference: str, text: str) -> None:
    assert HANGUL.search(text), text
    assert cer([(reference, text)]) < PLAUSIBLE_CER, text


def _vtt_texts(doc: webvtt.WebVTT) -> list[str]:
    return [html.unescape(c.text) for c in doc.captions]


# --- every format, in-process ---


@pytest.mark.usefixtures("shared_model")
def test_txt_to_stdout(utt: Utterance, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["transcribe", str(utt.path)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines
    for line in lines:
        assert re.fullmatch(r"\[\d\d:\d\d:\d\d\] <pfa00003> \S.*", line), line
    assert lines[0].startswith("[00:00:00] ")
    _assert_plausible(utt.text, " ".join(line.split("> ", 1)[1] for line in lines))
    assert "7" in out  # the model's digits reach the transcript


@pytest.mark.usefixtures("shared_model")
def test_vtt_file(utt: Utterance, tmp_path: Path) -> None:
    out = tmp_path / "talk.vtt"
    assert main(["transcribe", str(utt.path), "--format", "vtt", "-o", str(out)]) == 0
    doc = webvtt.read(str(out))
    assert len(doc) >= 1
    assert all(c.voice == "pfa00003" for c in doc.captions)
    duration = sf.info(str(utt.path)).duration
    for c in doc.captions:
        assert 0 <= c.start_in_seconds <= c.end_in_seconds <= duration + 0.5
    _assert_plausible(utt.text, " ".join(_vtt_texts(doc)))


@pytest.mark.usefixtures("shared_model")
def test_srt_file(utt: Utterance, tmp_path: Path) -> None:
    out = tmp_path / "talk.srt"
    assert main(["transcribe", str(utt.path), "--format", "srt", "-o", str(out)]) == 0
    doc = webvtt.from_srt(str(out))
    assert len(doc) >= 1
    texts = _vtt_texts(doc)
    assert all(t.startswith("pfa00003: ") for t in texts)
    assert out.read_text(encoding="utf-8").startswith("1\n00:00:")
    _assert_plausible(utt.text, " ".join(t.removeprefix("pfa00003: ") for t in texts))


@pytest.mark.usefixtures("shared_model")
def test_jsonl_file(utt: Utterance, tmp_path: Path) -> None:
    out = tmp_path / "talk.jsonl"
    assert main(["transcribe", str(utt.path), "--format", "jsonl", "-o", str(out)]) == 0
    events = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert events
    for e in events:
        assert (e["room"], e["speaker"], e["language"], e["is_final"]) == (
            "transcribe",
            "pfa00003",
            "ko",
            True,
        )
        assert e["words"] and e["start"] <= e["end"]
        assert e["words"][0]["start"] == e["start"]
    _assert_plausible(utt.text, " ".join(e["text"] for e in events))


# --- several files ---


@pytest.mark.usefixtures("shared_model")
def test_several_files_txt_has_a_header_per_file(
    utt: Utterance, utt2: Utterance, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["transcribe", str(utt.path), str(utt2.path)]) == 0
    out = capsys.readouterr().out
    first, second = out.split(f"# {utt2.path}\n")
    assert first.startswith(f"# {utt.path}\n[00:00:00] <pfa00003> ")
    assert second.startswith("[00:00:00] <pmc00002> ")  # each file keeps its own clock


@pytest.mark.usefixtures("shared_model")
def test_several_files_vtt_is_one_timeline(utt: Utterance, utt2: Utterance, tmp_path: Path) -> None:
    out = tmp_path / "both.vtt"
    args = ["transcribe", str(utt.path), str(utt2.path), "--format", "vtt", "-o", str(out)]
    assert main(args) == 0
    doc = webvtt.from_string(out.read_text(encoding="utf-8"), strict=True)
    first_len = sf.info(str(utt.path)).duration
    second = [c for c in doc.captions if c.voice == "pmc00002"]
    assert second and [c for c in doc.captions if c.voice == "pfa00003"]
    assert all(c.start_in_seconds >= int(first_len) for c in second)
    starts = [c.start_time for c in doc.captions]
    assert starts == sorted(starts)


@pytest.mark.usefixtures("shared_model")
def test_output_folder_gets_one_file_per_input(
    utt: Utterance, utt2: Utterance, tmp_path: Path
) -> None:
    args = ["transcribe", str(utt.path), str(utt2.path), "--format", "srt", "-o", str(tmp_path)]
    assert main(args) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pfa00003.srt", "pmc00002.srt"]
    assert len(webvtt.from_srt(str(tmp_path / "pmc00002.srt"))) >= 1


# --- decoding through ffmpeg ---


@needs_ffmpeg
@pytest.mark.parametrize("suffix", [".mp3", ".opus"])
@pytest.mark.usefixtures("shared_model")
def test_compressed_audio_goes_through_ffmpeg(
    suffix: str, utt2: Utterance, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    encoded = tmp_path / f"compressed{suffix}"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(utt2.path), str(encoded)], check=True)
    samples, rate = audio.decode_file(encoded)
    assert rate == audio.FFMPEG_RATE  # soundfile would have kept the file's own rate
    assert abs(len(samples) / rate - sf.info(str(utt2.path)).duration) < 0.1
    assert main(["transcribe", str(encoded), "--format", "jsonl"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {e["speaker"] for e in events} == {"compressed"}
    _assert_plausible(utt2.text, " ".join(e["text"] for e in events))


def test_stereo_is_mixed_to_mono(tmp_path: Path) -> None:
    t = np.arange(8000) / 8000
    left = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    path = tmp_path / "stereo.wav"
    sf.write(str(path), np.stack([left, np.zeros_like(left)], axis=1), 8000, subtype="PCM_16")
    samples, rate = audio.decode_file(path)
    assert (rate, samples.shape) == (8000, (8000,))
    assert samples.dtype == np.int16
    assert np.abs(samples.astype(np.int32) - left // 2).max() <= 1


def test_missing_ffmpeg_says_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = tmp_path / "clip.m4a"
    clip.write_bytes(b"\0" * 100)
    monkeypatch.setattr("bots.captioner.audio.shutil.which", lambda name: None)
    assert main(["transcribe", str(clip)]) == 2
    err = capsys.readouterr().err
    assert str(clip) in err and "install ffmpeg" in err


# --- bad input: exit 2 and one clear line, never a traceback ---


def _text_as_wav(tmp_path: Path) -> Path:
    path = tmp_path / "notes.wav"
    path.write_text("these are meeting notes, not audio\n", encoding="utf-8")
    return path


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.wav"
    path.touch()
    return path


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda tmp: tmp / "nowhere.wav", "no such file"),
        (_text_as_wav, "not a readable audio file"),
        (_empty, "empty"),
    ],
    ids=["missing", "text-renamed-wav", "empty"],
)
def test_bad_input_exits_2_with_one_line(
    make: Callable[[Path], Path], reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = make(tmp_path)
    out = tmp_path / "out.txt"
    assert main(["transcribe", str(path), "-o", str(out)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith(f"plenary: {path}: ")
    assert reason in err
    assert "\n" not in err and "Traceback" not in err
    assert captured.out == "" and not out.exists()


def test_bad_second_file_writes_nothing(
    utt: Utterance, tmp_path: Path, shared_model: None, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.txt"
    assert main(["transcribe", str(utt.path), str(_empty(tmp_path)), "-o", str(out)]) == 2
    assert "empty" in capsys.readouterr().err
    assert not out.exists()


def test_missing_model_exits_2(
    utt: Utterance, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "no-model"
    assert main(["transcribe", str(utt.path), "--model", str(model)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("plenary: ") and str(model) in err and "\n" not in err


def test_unconfigured_language_exits_2(utt: Utterance, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["transcribe", str(utt.path), "--lang", "xx"]) == 2
    assert "no Vosk model configured for language 'xx'" in capsys.readouterr().err


# --- the installed command ---


def test_real_command_writes_srt_to_stdout(utt: Utterance) -> None:
    plenary = Path(sys.executable).parent / "plenary"
    done = subprocess.run(
        [str(plenary), "transcribe", str(utt.path), "--format", "srt"],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    text = done.stdout.decode("utf-8")
    doc = webvtt.from_buffer(io.StringIO(text), format="srt")
    assert len(doc) >= 1
    _assert_plausible(utt.text, " ".join(t.removeprefix("pfa00003: ") for t in _vtt_texts(doc)))
    assert b"Traceback" not in done.stderr
    # stderr is not a terminal here: no progress bar.
    assert b"\r" not in done.stderr


def test_real_command_bad_input(tmp_path: Path) -> None:
    plenary = Path(sys.executable).parent / "plenary"
    bad = _text_as_wav(tmp_path)
    done = subprocess.run(
        [str(plenary), "transcribe", str(bad)], capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 2
    err = done.stderr.decode().strip()
    assert err.startswith(f"plenary: {bad}: not a readable audio file (")
    assert "\n" not in err


@pytest.mark.usefixtures("shared_model")
def test_progress_bar_only_on_a_terminal(
    utt: Utterance, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["transcribe", str(utt.path)]) == 0
    assert "pfa00003:" not in capsys.readouterr().err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["transcribe", str(utt.path)]) == 0
    captured = capsys.readouterr()
    assert "pfa00003: " in captured.err and "s/s" in captured.err  # tqdm's bar
    assert "s/s" not in captured.out
