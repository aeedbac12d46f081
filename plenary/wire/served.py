"""What the orchestrator serves: the ``data:`` of its SSE ``caption``/``partial`` and
``correction`` events, the JSON poll's ``events`` and ``corrections``, the JSON
transcript's captions. The orchestrator serializes through these models; consumers (the
IRC relay, the demo) read through them:

    caption = served_caption(message.data)   # WireError naming the bad field
    seq, event = caption.seq, caption.event(room="keynote")
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self, TypeVar

from pydantic import Field, ValidationError, model_validator

from plenary.events import CaptionEvent
from plenary.wire.rules import (
    MAX_DURATION_MS,
    Count,
    Flag,
    Label,
    ShownMs,
    WireModel,
    Words,
    wire_error,
)


class ServedCaption(WireModel):
    """A final caption numbered ``seq`` in its room (SSE ``event: caption``, ``id: seq``),
    or a live partial (``event: partial``, ``seq`` 0, ``is_final`` false)."""

    seq: Count = Field(description="The caption's number in its room (its SSE id); "
                       "0: a partial")  # fmt: skip
    room: Label = ""
    session: Label = Field(
        "", description="The transcript's identifier (/pid/<session>); '' when none is kept"
    )
    at: ShownMs = Field(description="End of the speech, epoch ms")
    duration_ms: Count = Field(0, le=MAX_DURATION_MS, description="Length of the speech")
    speaker: Words = ""
    language: Label = ""
    text: Words = Field(description="At its latest revision; no control characters but tab")
    message_id: Label = Field("", description="Shared by an utterance's partials and final")
    is_final: Flag = True
    revision: Count = Field(0, description="Corrections made to it (0: none)")

    @model_validator(mode="after")
    def _numbered(self) -> Self:
        if self.is_final and self.seq < 1:
            raise ValueError(f"a final caption's seq is its number, at least 1, not {self.seq}")
        return self

    def event(self, room: str | None = None, zero_s: float = 0.0) -> CaptionEvent:
        """The caption as an event whose ``start``/``end`` are seconds after ``zero_s``
        (epoch seconds; 0: the event's times are epoch seconds). ``room``: the stream's."""
        end = self.at / 1000 - zero_s
        return CaptionEvent(
            room=self.room if room is None else room,
            speaker=self.speaker,
            language=self.language,
            text=self.text,
            is_final=self.is_final,
            start=end - self.duration_ms / 1000,
            end=end,
            message_id=self.message_id,
        )


class ServedCorrection(WireModel):
    """Revision ``revision`` of caption ``seq`` (SSE ``event: correction``, ``id: pos``;
    docs/corrections.md)."""

    pos: Count = Field(ge=1, description="The correction's own position in the room's "
                       "stream (its SSE id)")  # fmt: skip
    seq: Count = Field(ge=1, description="The caption corrected")
    revision: Count = Field(ge=1, description="1 for the first correction, …")
    text: Words = ""
    speaker: Words = ""
    by: Words = Field("", description="The captioner (source:username)")
    at: ShownMs = Field(description="When it was corrected, epoch ms")


M = TypeVar("M", bound=WireModel)


def _read(model: type[M], data: str | bytes | Mapping[str, Any], what: str) -> M:
    try:
        if isinstance(data, str | bytes):
            return model.model_validate_json(data)
        return model.model_validate(data)
    except ValidationError as exc:
        raise wire_error(exc, what) from None


def served_caption(data: str | bytes | Mapping[str, Any]) -> ServedCaption:
    """A served caption from its JSON text (an SSE ``data:``) or an already decoded object;
    ``WireError`` (a ValueError) naming the bad field, e.g. ``caption.at: Field required``."""
    return _read(ServedCaption, data, "caption")


def served_correction(data: str | bytes | Mapping[str, Any]) -> ServedCorrection:
    """A served correction, as ``served_caption``."""
    return _read(ServedCorrection, data, "correction")
