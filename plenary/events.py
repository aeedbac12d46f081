"""Caption events: what every audio path produces and every consumer reads."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

# The Korean model spells numbers it hears as digits in brackets ("[7] 년전");
# attendees should read "7 년전".
_BRACKETED = re.compile(r"\[([^\[\]]*)\]")
_SPACES = re.compile(r"\s+")


def clean_text(raw: str) -> str:
    """Display text from a recognizer's raw output."""
    text = _BRACKETED.sub(r"\1", raw)
    return _SPACES.sub(" ", text).strip()


@dataclass(frozen=True, slots=True)
class Word:
    word: str
    start: float
    end: float
    conf: float


@dataclass(frozen=True, slots=True)
class CaptionEvent:
    """One partial or final caption of one speaker.

    ``start``/``end`` are seconds on the stream's own audio clock (0 = first sample
    received). ``message_id`` is shared by an utterance's partials and its final.
    ``room`` may be empty when ``meeting_id`` names the Jitsi meeting instead.
    """

    room: str
    speaker: str
    language: str
    text: str
    is_final: bool
    start: float
    end: float
    message_id: str
    words: tuple[Word, ...] = field(default=())
    # Where the producer knows no Plenary room: the Jitsi meeting id (bridge sessionId)
    # and the speaker's endpoint id (MUC nick); the orchestrator maps them to a room and
    # a display name from Prosody's meeting and occupant events.
    meeting_id: str = ""
    endpoint: str = ""
    # Stable id given by the producer, so a retried final is stored once.
    event_id: str = ""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["words"] = [asdict(w) for w in self.words]
        return data
