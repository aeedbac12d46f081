"""Caption events as they cross the wire: one schema for every producer input, no I/O.

The HTTP producer API (``POST /api/v1/captions``, ``POST /api/v1/rooms/<room>/captions``)
and Jigasi's posts are read here; what the captioner's delivery sends validates against
the same ``ProducerEvent``. The rules (docs/delivery.md):

- the body is UTF-8 JSON: raw invalid bytes (CESU-8 surrogates among them) are refused;
- every string is Unicode scalar values: a JSON escape of a lone surrogate (``"\\ud800"``)
  is refused, naming the field;
- numbers are finite: ``NaN``, ``Infinity`` and ``1e400`` (which overflows) are refused,
  naming the field;
- control characters other than tab are removed from caption text and speaker names
  (line breaks become spaces); identifiers with any are refused;
- a timestamp more than a day from server time is not refused: ``sane_time`` says so and
  the caller files the caption at its arrival.

    event, timestamp = producer_event(json_body(raw)["events"][0], 0, room=None)

``WireError`` carries the problem's detail and its ``errors`` (``field``, ``message``).
The store's reads use ``scrub`` and ``stored_ms`` so that rows written before these rules
(or by hand) still render.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from plenary.events import CaptionEvent

MAX_TEXT = 10_000  # characters of one caption
MAX_NAME = 200  # characters of an identifier or a speaker's name
MAX_SECONDS = 1e9  # start/end on a stream's audio clock
MAX_DURATION_MS = 3_600_000  # one caption's speech lasts at most an hour
TIMESTAMP_WINDOW_MS = 86_400_000  # a producer's timestamp within a day of server time
# Times a page may show: 1970-01-01 … 2100-01-01 (epoch ms).
MIN_MS, MAX_MS = 0, 4_102_444_800_000

_SPACES = {0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x1F, 0x85, 0x2028, 0x2029}
_CONTROLS: dict[int, str | None] = {
    cp: (" " if cp in _SPACES else None) for cp in (*range(0x20), *range(0x7F, 0xA0)) if cp != 9
}
_CONTROLS.update({0x2028: " ", 0x2029: " "})


class WireError(ValueError):
    """A producer's input does not fit; ``detail`` names the first bad field."""

    def __init__(self, detail: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


# ---- strings and numbers --------------------------------------------------------------


def _scalar_values(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            "must be valid Unicode text (a lone surrogate such as \\ud800 is not)"
        ) from None
    return value


def strip_controls(value: str) -> str:
    """Control characters other than tab removed; line breaks become spaces."""
    return value.translate(_CONTROLS)


def _no_controls(value: str) -> str:
    if strip_controls(value) != value:
        raise ValueError("must not contain control characters")
    return value


def is_clean(value: str) -> bool:
    """Whether ``value`` is Unicode scalar values without control characters but tab."""
    return value.isprintable() or (
        strip_controls(value) == value and not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    )


def scrub(value: object) -> str:
    """Any stored value as text a page can show: invalid bytes and lone surrogates become
    U+FFFD, control characters go as in ``strip_controls``."""
    if isinstance(value, bytes):
        text = value.decode("utf-8", "replace")
    elif isinstance(value, str):
        text = value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    else:
        text = "" if value is None else str(value)
    return strip_controls(text)


def stored_ms(value: object, default: int = 0) -> int:
    """A stored time (epoch ms) clamped to what a page can show; not a number: ``default``."""
    if isinstance(value, bytes | str):
        try:
            value = float(value)
        except ValueError:
            return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    if isinstance(value, float):
        if not math.isfinite(value):
            return default
        value = int(value)
    return min(max(value, MIN_MS), MAX_MS)


def duration_ms(start: float, end: float) -> int:
    """Milliseconds from start to end, within 0 … ``MAX_DURATION_MS``."""
    span = (end - start) * 1000
    if not math.isfinite(span):
        return 0
    return min(MAX_DURATION_MS, max(0, round(span)))


def sane_time(timestamp: int | None, now_ms: int) -> int | None:
    """The producer's timestamp when within ``TIMESTAMP_WINDOW_MS`` of ``now_ms``; None
    otherwise (the caller uses the arrival time, and logs a given one it replaced)."""
    if timestamp is None or abs(timestamp - now_ms) > TIMESTAMP_WINDOW_MS:
        return None
    return timestamp


_Str = Annotated[str, Field(strict=True), AfterValidator(_scalar_values)]
Ident = Annotated[_Str, Field(max_length=MAX_NAME), AfterValidator(_no_controls)]
Name = Annotated[_Str, Field(max_length=MAX_NAME), AfterValidator(strip_controls)]
Text = Annotated[_Str, Field(max_length=MAX_TEXT), AfterValidator(strip_controls)]
Seconds = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-MAX_SECONDS, le=MAX_SECONDS)]
EpochMs = Annotated[int, Field(strict=True)]
Flag = Annotated[bool, Field(strict=True)]


# ---- the schemas ------------------------------------------------------------------------


class ProducerEvent(BaseModel):
    """One caption event of ``POST /api/v1/captions`` (and the per-room endpoint)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

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


class JigasiParticipant(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: Ident = ""
    name: Name | None = None


class JigasiAlternative(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    text: Text


class JigasiBody(BaseModel):
    """A Jigasi ``SEND_JSON_REMOTE_URLS`` post (docs/protocols.md §2); jigasi.py reads it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event: Literal["SPEECH", "JOIN", "LEAVE", "START", "END", "RAISE_HAND", "WILL_END"]
    room_name: Annotated[_Str, Field(max_length=3071), AfterValidator(_no_controls)]
    timestamp: EpochMs | None = None
    participant: JigasiParticipant | None = None
    transcript: list[JigasiAlternative] | None = None
    language: Ident = ""
    message_id: Ident = ""
    is_interim: Flag = False


# ---- reading ----------------------------------------------------------------------------


def json_body(body: bytes) -> Any:
    """The JSON of a request body: UTF-8 only (json.loads would take CESU-8 surrogates);
    NaN, Infinity and overflowing numbers are kept as floats for the schema to refuse
    by field."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError(f"body is not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise WireError(f"body is not JSON: {exc.msg} at character {exc.pos}") from None


def field_name(loc: tuple[int | str, ...], prefix: str = "") -> str:
    """``("events", 3, "text")`` → ``events[3].text``."""
    name = prefix
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


def _message(err: Any) -> str:
    given = err.get("input")
    if isinstance(given, float) and not math.isfinite(given):
        return "must be a finite number (not NaN, Infinity or an overflowing 1e400)"
    if err["type"] == "int_type" and isinstance(err.get("input"), float):
        return "must be an integer (epoch milliseconds)"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def wire_error(exc: ValidationError, prefix: str = "") -> WireError:
    errors = [
        {"field": field_name(tuple(e["loc"]), prefix), "message": _message(e)}
        for e in exc.errors(include_url=False)
    ]
    first = errors[0]
    return WireError(f"{first['field']}: {first['message']}", errors)


def producer_event(item: Any, n: int, room: str | None) -> tuple[CaptionEvent, int | None]:
    """Event ``n`` of a post, and its timestamp as given. ``room`` from the URL; None: the
    event names its room or meeting (and a final its id)."""
    where = f"events[{n}]"
    if not isinstance(item, dict):
        raise WireError(f"{where} must be an object")
    try:
        wire = ProducerEvent.model_validate(item)
    except ValidationError as exc:
        raise wire_error(exc, where) from None
    if room is None:
        room = wire.room
        if not room and not wire.meeting_id:
            raise WireError(f"{where}: room or meeting_id must name where the caption goes")
        if wire.is_final and not wire.id:
            raise WireError(f"{where}.id must be the producer's event id (a final needs one)")
    event = CaptionEvent(
        room=room,
        speaker=wire.speaker,
        language=wire.language,
        text=wire.text,
        is_final=wire.is_final,
        start=wire.start,
        end=wire.end,
        message_id=wire.message_id,
        meeting_id=wire.meeting_id,
        endpoint=wire.endpoint,
        event_id=wire.id,
    )
    return event, wire.timestamp
