"""Audio files → int16 mono samples, for offline transcription.

WAV, FLAC and OGG/Vorbis are read with soundfile at their own rate. Anything else
(mp3, opus, m4a, video…), and a WAV/FLAC/OGG that libsndfile cannot read, goes
through ``ffmpeg``, decoded to 16 kHz (the rate the recognizer works at).

    samples, rate = decode_file(Path("talk.mp3"))
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf

FFMPEG_RATE = 16000
SOUNDFILE_SUFFIXES = frozenset({".wav", ".flac", ".ogg"})


class AudioError(Exception):
    """A file cannot be decoded; the message names the file and the reason."""


Samples = npt.NDArray[np.int16]


def decode_file(path: Path) -> tuple[Samples, int]:
    """The file's audio as int16 mono samples and their sample rate.

    Raises AudioError when the file is missing, empty, not audio, or needs ffmpeg
    and ffmpeg is not installed.
    """
    try:
        size = path.stat().st_size
        with path.open("rb"):
            pass  # readable by us, so a failure below is about the content
    except FileNotFoundError:
        raise AudioError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise AudioError(f"{path}: not a file") from None
    except OSError as exc:
        raise AudioError(f"{path}: cannot read it ({exc.strerror})") from None
    if not path.is_file():
        raise AudioError(f"{path}: not a file")
    if size == 0:
        raise AudioError(f"{path}: the file is empty")
    if path.suffix.lower() in SOUNDFILE_SUFFIXES:
        try:
            samples, rate = _read_soundfile(path)
        except (sf.LibsndfileError, RuntimeError) as exc:
            if shutil.which("ffmpeg") is None:
                raise AudioError(f"{path}: not a readable audio file ({exc})") from None
            samples, rate = _read_ffmpeg(path)
    else:
        samples, rate = _read_ffmpeg(path)
    if samples.size == 0:
        raise AudioError(f"{path}: contains no audio")
    return samples, rate


def _read_soundfile(path: Path) -> tuple[Samples, int]:
    audio, rate = sf.read(str(path), dtype="int16", always_2d=True)
    if audio.shape[1] == 1:
        return np.ascontiguousarray(audio[:, 0]), int(rate)
    mixed = np.rint(audio.mean(axis=1, dtype=np.float64))
    return mixed.astype(np.int16), int(rate)


def _read_ffmpeg(path: Path) -> tuple[Samples, int]:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioError(
            f"{path}: decoding {path.suffix or 'this'} files needs ffmpeg, which is not "
            "installed: install ffmpeg (e.g. apt-get install ffmpeg)"
        )
    # "file:" keeps a name that starts with "-" or contains ":" from being read
    # as an option or a protocol.
    command = [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-i",
        f"file:{path}",
        "-vn",
        "-ac",
        "1",
        "-ar",
        str(FFMPEG_RATE),
        "-f",
        "s16le",
        "-",
    ]
    # An argument list, no shell: the file name cannot inject anything.
    done = subprocess.run(command, capture_output=True, check=False)  # noqa: S603
    if done.returncode != 0:
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = lines[-1] if lines else f"ffmpeg exited with status {done.returncode}"
        reason = reason.removeprefix(f"file:{path}: ")
        raise AudioError(f"{path}: not a readable audio file ({reason})")
    usable = len(done.stdout) - len(done.stdout) % 2
    return np.frombuffer(done.stdout[:usable], dtype="<i2").astype(np.int16), FFMPEG_RATE
