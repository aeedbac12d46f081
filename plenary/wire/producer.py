"""Producer input: ``POST /api/v1/captions``, ``POST /api/v1/rooms/<room>/captions`` and
Jigasi's ``SEND_JSON_REMOTE_URLS`` posts (docs/protocols.md §2), read without I/O.

    event, timestamp = producer_event(json_body(raw)["events"][0], 0, room=None)
    post = jigasi_body(raw)
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator

from plenary.events import CaptionEvent
from plenary.wire.rules import (
    EpochMs,
    Flag,
    Ident,
    Name,
    Seconds,
    Text,
    WireError,
    WireModel,
    _no_controls,
    _Str,
    json_body,
    wire_error,
)

JIGASI_EVENTS = ("SPEECH", "JOIN", "LEAVE", "START", "END", "RAISE_HAND", "WILL_END")


class ProducerEvent(WireModel):
    """One caption event of ``POST /api/v1/captions`` (and the per-room endpoint)."""

    id: Ident = Field("", description="The producer's event id (a final needs one in "
                      "POST /api/v1/captions)")  # fmt: skip
    room: Ident = ""
    meeting_id: Ident = ""
    endpoint: Ident = ""
    speaker: Name = Field("", description="Control characters are removed")
    language: Ident = ""
    message_id: Ident = ""
    text: Text = Field(description="Control characters other than tab are removed")
    is_final: Flag = True
    start: Seconds = Field(0.0, description="Seconds on the stream's audio clock")
    end: Seconds = 0.0
    timestamp: EpochMs | None = Field(None, description="When it was produced, epoch ms; "
                                      "more than a day from server time: arrival time")  # fmt: skip

    def event(self, room: str | None = None) -> CaptionEvent:
        """The caption event; ``room`` (from the URL) instead of the event's own."""
        return CaptionEvent(
            room=self.room if room is None else room,
            speaker=self.speaker,
            language=self.language,
            text=self.text,
            is_final=self.is_final,
            start=self.start,
            end=self.end,
            message_id=self.message_id,
            meeting_id=self.meeting_id,
            endpoint=self.endpoint,
            event_id=self.id,
        )


def producer_event(item: Any, n: int, room: str | None) -> tuple[CaptionEvent, int | None]:
    """Event ``n`` of a post, and its timestamp as given. ``room`` from the URL; None: the
    event names its room or meeting (and a final its id)."""
    where = f"events[{n}]"
    try:
        wire = ProducerEvent.model_validate(item)
    except ValidationError as exc:
        raise wire_error(exc, where) from None
    if room is None:  # the batch endpoint: where it goes and, for a final, its id
        if not wire.room and not wire.meeting_id:
            raise WireError(f"{where}: room or meeting_id must name where the caption goes")
        if wire.is_final and not wire.id:
            raise WireError(f"{where}.id must be the producer's event id (a final needs one)")
    return wire.event(room), wire.timestamp


# ---- Jigasi -----------------------------------------------------------------------------


class JigasiParticipant(WireModel):
    id: Ident = ""
    name: Name | None = None


class JigasiAlternative(WireModel):
    text: Text


class JigasiBody(WireModel):
    """A Jigasi ``SEND_JSON_REMOTE_URLS`` post (docs/protocols.md §2), exactly as Jigasi
    sends it: ``stability``, ``type``, a participant's ``email`` and the like are read
    past. JOIN, LEAVE and SPEECH carry their participant, SPEECH its transcript."""

    event: Literal["SPEECH", "JOIN", "LEAVE", "START", "END", "RAISE_HAND", "WILL_END"]
    room_name: Annotated[_Str, Field(max_length=3071), AfterValidator(_no_controls)]
    timestamp: EpochMs | None = None
    participant: JigasiParticipant | None = None
    transcript: list[JigasiAlternative] | None = None
    language: Ident = ""
    message_id: Ident = ""
    is_interim: Flag = False

    @field_validator("event", mode="before")
    @classmethod
    def _known(cls, value: object) -> object:
        if value not in JIGASI_EVENTS:
            raise ValueError(f"must be one of {', '.join(JIGASI_EVENTS)}; got {value!r}")
        return value

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.event in ("JOIN", "LEAVE", "SPEECH") and self.participant is None:
            raise ValueError(f"participant must be an object (a {self.event} names who)")
        if self.event == "SPEECH" and not self.transcript:
            raise ValueError("transcript must be a non-empty list of {text, confidence}")
        return self


def jigasi_body(body: bytes) -> JigasiBody:
    """A Jigasi post's raw body read by ``JigasiBody``; ``WireError`` naming the field."""
    data = json_body(body)
    try:
        return JigasiBody.model_validate(data)
    except ValidationError as exc:
        raise wire_error(exc) from None
