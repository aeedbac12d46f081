"""``plenary transcribe``: audio files → a transcript, offline, as fast as the CPU allows.

    plenary transcribe talk.mp3 --format vtt -o talk.vtt
    plenary transcribe day1/*.wav --format srt -o subtitles/   # one .srt per file
    plenary transcribe a.wav b.wav                             # one combined txt on stdout

Each file goes through the same path as live audio (VAD segmentation, then Vosk),
with the file's name (without suffix) as the speaker.

Several files:
  * ``-o`` an existing folder: one output per file, ``<folder>/<stem>.<format>``;
  * otherwise one combined document, on stdout or in the ``-o`` file. txt puts a
    ``# <file>`` header before each file's lines and jsonl keeps each file's own
    clock (the speaker names the file); vtt and srt are a single timeline, so each
    file's cues are shifted by the length of the files before it, as if the files
    were played back to back.

Nothing is written until every file is transcribed. Unreadable input, a missing
model or an unwritable output prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from bots.captioner.audio import AudioError, Samples, decode_file
from bots.captioner.engine import Engine
from bots.captioner.stream import StreamTranscriber
from bots.captioner.vosk_models import ModelError, ModelRegistry
from plenary import formats
from plenary.events import CaptionEvent, Word
from plenary.settings import Settings

CHUNK_SECONDS = 0.5
ROOM = "transcribe"


@dataclasses.dataclass(frozen=True, slots=True)
class Transcript:
    path: Path
    duration: float  # seconds of audio
    events: list[CaptionEvent]


def run(args: argparse.Namespace, settings: Settings) -> int:
    language: str = args.lang or settings.captioner.default_language
    paths = dict(settings.models)
    if args.model is not None:
        paths[language] = args.model
    output: Path | None = args.output
    stems = [path.stem for path in args.files]
    if output is not None and output.is_dir() and len(set(stems)) < len(stems):
        print(
            f"plenary: two input files share a name; cannot write both into {output}/",
            file=sys.stderr,
        )
        return 2
    engine = Engine(settings.captioner, ModelRegistry.for_settings(settings, paths))
    try:
        transcripts = asyncio.run(_transcribe_all(engine, args.files, language))
    except (AudioError, ModelError) as exc:
        print(f"plenary: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.close()
    try:
        _write(transcripts, args.format, output)
    except OSError as exc:
        print(f"plenary: cannot write {exc.filename or output}: {exc.strerror}", file=sys.stderr)
        return 2
    return 0


async def _transcribe_all(engine: Engine, paths: Sequence[Path], language: str) -> list[Transcript]:
    out = []
    for path in paths:
        samples, rate = decode_file(path)
        events = await transcribe_samples(engine, samples, rate, language, speaker=path.stem)
        out.append(Transcript(path, len(samples) / rate, events))
    return out


async def transcribe_samples(
    engine: Engine, samples: Samples, rate: int, language: str, *, speaker: str
) -> list[CaptionEvent]:
    """Final caption events of one recording, fed in CHUNK_SECONDS pieces."""
    await engine.preload([language])  # loads the model once; a missing one fails here
    async with engine.open_stream("file") as lease:
        stream = lease.open_transcriber(
            sample_rate=rate, language=language, room=ROOM, speaker=speaker
        )
        return await _feed_all(stream, samples, rate, speaker)


async def _feed_all(
    stream: StreamTranscriber, samples: Samples, rate: int, speaker: str
) -> list[CaptionEvent]:
    chunk = max(1, int(rate * CHUNK_SECONDS))
    events: list[CaptionEvent] = []
    with tqdm(
        total=round(len(samples) / rate, 1),
        desc=speaker,
        unit="s",
        file=sys.stderr,
        disable=not sys.stderr.isatty(),
        leave=False,
    ) as bar:
        for i in range(0, len(samples), chunk):
            piece = samples[i : i + chunk]
            result = await stream.feed(piece.tobytes())
            events += (f.event for f in result.finals)
            bar.update(round(len(piece) / rate, 3))
        events += (f.event for f in (await stream.flush()).finals)
    return events


def _write(transcripts: list[Transcript], fmt: str, output: Path | None) -> None:
    if output is not None and output.is_dir():
        for t in transcripts:
            (output / f"{t.path.stem}.{fmt}").write_text(
                formats.write(t.events, fmt), encoding="utf-8"
            )
        return
    text = _combined(transcripts, fmt)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        output.write_text(text, encoding="utf-8")


def _combined(transcripts: list[Transcript], fmt: str) -> str:
    if len(transcripts) == 1:
        return formats.write(transcripts[0].events, fmt)
    if fmt == "txt":
        return "\n".join(f"# {t.path}\n{formats.to_txt(t.events)}" for t in transcripts)
    if fmt == "jsonl":
        return "".join(formats.to_jsonl(t.events) for t in transcripts)
    events: list[CaptionEvent] = []
    offset = 0.0
    for t in transcripts:
        events += (_shifted(e, offset) for e in t.events)
        offset += t.duration
    return formats.write(events, fmt)


def _shifted(event: CaptionEvent, offset: float) -> CaptionEvent:
    words = tuple(
        Word(w.word, round(w.start + offset, 3), round(w.end + offset, 3), w.conf)
        for w in event.words
    )
    return dataclasses.replace(
        event,
        start=round(event.start + offset, 3),
        end=round(event.end + offset, 3),
        words=words,
    )
