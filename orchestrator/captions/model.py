"""What the store hands out: numbered captions and caption sessions."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from plenary.events import CaptionEvent
from plenary.wire import (
    MAX_DURATION_MS,
    ServedCaption,
    ServedCorrection,
    is_clean,
    scrub,
    stored_ms,
)


@dataclass(frozen=True)
class Caption:
    """A final caption numbered ``seq`` within its room, or a live partial (``seq`` 0).

    ``at_ms`` is the wall-clock end of the speech (epoch ms), ``duration_ms`` its length.
    Encodings are computed once per caption and shared by every subscriber.
    """

    room: str
    seq: int
    session: str  # the session's persistent identifier; "" for partials and live-only rooms
    at_ms: int
    duration_ms: int
    speaker: str
    language: str
    text: str
    message_id: str
    is_final: bool = True
    revision: int = 0  # corrections made to it (docs/corrections.md)

    def __post_init__(self) -> None:
        # Whatever built it (a row, a name Prosody or Jigasi gave before the wire rules),
        # every page, stream and export gets text it can encode: no lone surrogates, no
        # control characters but tab; and times a page can show (the served schema's
        # bounds: 1970 … 2100, at most an hour long), whatever the clock said.
        for name in ("room", "session", "speaker", "language", "text", "message_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not is_clean(value):
                object.__setattr__(self, name, scrub(value))
        object.__setattr__(self, "at_ms", stored_ms(self.at_ms))
        object.__setattr__(self, "duration_ms", min(max(0, self.duration_ms), MAX_DURATION_MS))

    @cached_property
    def served(self) -> ServedCaption:
        """What readers get (plenary.wire.ServedCaption): SSE ``caption``/``partial``,
        the JSON poll's ``events``, the JSON transcript's captions."""
        return ServedCaption(
            seq=self.seq,
            room=self.room,
            session=self.session,
            at=self.at_ms,
            duration_ms=self.duration_ms,
            speaker=self.speaker,
            language=self.language,
            text=self.text,
            message_id=self.message_id,
            is_final=self.is_final,
            revision=self.revision,
        )

    def to_json(self) -> dict[str, Any]:
        return self.served.model_dump()

    @property
    def position(self) -> int:
        """Its place in the room's ordered stream (SSE id): its number."""
        return self.seq

    @property
    def clock(self) -> str:
        """HH:MM:SS of the caption in the server's time zone."""
        return dt.datetime.fromtimestamp(self.at_ms / 1000).strftime("%H:%M:%S")

    @cached_property
    def sse(self) -> bytes:
        data = self.served.model_dump_json()  # compact, UTF-8 as is (not \u escapes)
        if self.is_final:
            return f"id: {self.seq}\nevent: caption\ndata: {data}\n\n".encode()
        return f"event: partial\ndata: {data}\n\n".encode()

    @cached_property
    def line(self) -> bytes:
        text = " ".join(self.text.split())
        who = " ".join(self.speaker.split())
        return f"[{self.clock}] <{who}> {text}\n".encode()

    def as_event(self, session_start_ms: int) -> CaptionEvent:
        """The caption on the session's clock, for the transcript writers."""
        end = max(0, self.at_ms - session_start_ms) / 1000
        start = max(0.0, end - self.duration_ms / 1000)
        return CaptionEvent(
            room=self.room,
            speaker=self.speaker,
            language=self.language,
            text=self.text,
            is_final=True,
            start=start,
            end=end,
            message_id=self.message_id,
        )


@dataclass(frozen=True)
class Correction:
    """Revision ``revision`` of caption ``seq``, by a captioner; ``pos`` is its own number
    in the room's stream (taken from the same counter as captions' numbers)."""

    room: str
    pos: int
    seq: int
    revision: int
    at_ms: int
    by: str
    text: str
    speaker: str
    old_text: str = ""
    old_speaker: str = ""
    is_final: bool = True  # travels like a final: numbered, never a partial

    def __post_init__(self) -> None:
        for name in ("by", "text", "speaker", "old_text", "old_speaker"):
            value = getattr(self, name)
            if not isinstance(value, str) or not is_clean(value):
                object.__setattr__(self, name, scrub(value))
        object.__setattr__(self, "at_ms", stored_ms(self.at_ms))

    @property
    def position(self) -> int:
        return self.pos

    @cached_property
    def served(self) -> ServedCorrection:
        """What live readers get (plenary.wire.ServedCorrection): SSE ``correction``, the
        JSON poll's ``corrections``."""
        return ServedCorrection(
            pos=self.pos,
            seq=self.seq,
            revision=self.revision,
            text=self.text,
            speaker=self.speaker,
            by=self.by,
            at=self.at_ms,
        )

    def to_json(self) -> dict[str, Any]:
        return self.served.model_dump()

    def history_json(self) -> dict[str, Any]:
        """One entry of a caption's history in the JSON transcript export."""
        return {**self.to_json(), "old_text": self.old_text, "old_speaker": self.old_speaker}

    @cached_property
    def sse(self) -> bytes:
        data = self.served.model_dump_json()
        return f"id: {self.pos}\nevent: correction\ndata: {data}\n\n".encode()

    @property
    def irc(self) -> str:
        """The IRC line: ``* correction: <Speaker> new text`` (no CR, LF or NUL)."""
        text = " ".join(self.text.replace("\0", " ").split())
        who = " ".join(self.speaker.replace("\0", " ").split())
        return f"* correction: <{who}> {text}"


Item = Caption | Correction  # what a room's stream carries


@dataclass(frozen=True, slots=True)
class Session:
    id: int
    pid: str
    room: str
    started_at_ms: int
    last_at_ms: int
    ended_at_ms: int | None
    withdrawn_at_ms: int | None
    withdrawn_reason: str | None
    events: int = 0

    @property
    def withdrawn(self) -> bool:
        return self.withdrawn_at_ms is not None
