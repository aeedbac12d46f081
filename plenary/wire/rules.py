"""The rules every caption JSON follows, producer input and served output alike (no I/O).

Strings are Unicode scalar values, numbers finite, control characters other than tab
gone from text and names and refused in identifiers; ``WireModel`` is the base of every
schema (producer.py, served.py). ``WireError`` names the first bad field.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

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
    """Caption JSON that does not fit its schema; ``detail`` names the first bad field,
    ``errors`` lists every one (``field``, ``message``)."""

    def __init__(self, detail: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


class WireModel(BaseModel):
    """The base of every caption schema: unknown keys are ignored (a newer peer may add
    some), instances are immutable; in the published (serialization) JSON schema every
    field is required, since whoever serializes one writes every field."""

    model_config = ConfigDict(
        extra="ignore", frozen=True, json_schema_serialization_defaults_required=True
    )


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
    if value.isprintable():  # the common case, in C: nothing to remove
        return value
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
# Producer input: bounded lengths.
Ident = Annotated[_Str, Field(max_length=MAX_NAME), AfterValidator(_no_controls)]
Name = Annotated[_Str, Field(max_length=MAX_NAME), AfterValidator(strip_controls)]
Text = Annotated[_Str, Field(max_length=MAX_TEXT), AfterValidator(strip_controls)]
# Served output: the same rules without the producer's lengths (a correction's text is
# as long as captions.max_correction_chars allows, a Jigasi room name up to 3071).
Label = Annotated[_Str, AfterValidator(_no_controls)]
Words = Annotated[_Str, AfterValidator(strip_controls)]
Seconds = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-MAX_SECONDS, le=MAX_SECONDS)]
EpochMs = Annotated[int, Field(strict=True)]
ShownMs = Annotated[int, Field(strict=True, ge=MIN_MS, le=MAX_MS)]
Count = Annotated[int, Field(strict=True, ge=0)]
Flag = Annotated[bool, Field(strict=True)]


# ---- reading ----------------------------------------------------------------------------


def json_body(body: bytes) -> Any:
    """The JSON of a request body: UTF-8 only (json.loads would take CESU-8 surrogates);
    NaN, Infinity and overflowing numbers are kept as floats for the schema to refuse
    by field, and a lone surrogate's escape as text for the schema to refuse by field
    (pydantic's own JSON parser refuses both without naming the field, hence json.loads)."""
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
    if err["type"] == "int_type" and isinstance(given, float):
        return "must be an integer (epoch milliseconds)"
    if err["type"] in ("model_type", "model_attributes_type", "dict_type"):
        return "must be a JSON object"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def wire_error(exc: ValidationError, prefix: str = "") -> WireError:
    """The pydantic error as a ``WireError`` naming each field (``prefix`` before it)."""
    errors = [
        {"field": field_name(tuple(e["loc"]), prefix), "message": _message(e)}
        for e in exc.errors(include_url=False)
    ]
    first = errors[0]
    return WireError(f"{first['field']}: {first['message']}", errors)
