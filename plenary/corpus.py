"""Reference recordings with exact transcripts (``<speech_dir>/<lang>/transcripts.tsv``).

Used by the demo, the tests and the benchmarks; the recordings themselves live
outside the repository (``settings.speech_dir``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class CorpusMissing(Exception):
    """The speech folder or its transcripts are absent; the message says which."""


@dataclass(frozen=True, slots=True)
class Utterance:
    id: str
    path: Path
    text: str

    @property
    def speaker(self) -> str:
        """emotiontts ids are speaker + number (pfa00001); LibriSpeech ids speaker-chapter-n."""
        return self.id.split("-")[0] if "-" in self.id else self.id.rstrip("0123456789")


def load_corpus(speech_dir: Path, language: str) -> list[Utterance]:
    folder = speech_dir / language
    index = folder / "transcripts.tsv"
    if not index.is_file():
        raise CorpusMissing(
            f"no reference speech for {language!r}: {index} does not exist "
            "(set speech_dir / PLENARY_SPEECH_DIR to the shared speech folder)"
        )
    rows: list[Utterance] = []
    for n, line in enumerate(index.read_text(encoding="utf-8").splitlines()):
        if n == 0 or not line.strip():
            continue  # header: id, audio, text
        ident, audio, text = line.split("\t", 2)
        rows.append(Utterance(ident, folder / audio, text))
    return rows
