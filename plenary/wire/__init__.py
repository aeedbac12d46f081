"""Caption JSON as it crosses the wire: one model family for what producers send and what
the orchestrator serves, no I/O.

- Producer input (producer.py): ``ProducerEvent`` reads ``POST /api/v1/captions`` and
  ``POST /api/v1/rooms/<room>/captions``, ``JigasiBody`` Jigasi's posts; what the
  captioner's delivery sends validates against ``ProducerEvent``.
- Served output (served.py): ``ServedCaption`` and ``ServedCorrection`` are what the SSE
  stream's ``data:`` and the JSON poll carry. The orchestrator serializes through them
  (its OpenAPI document publishes their JSON schema); the IRC relay and the demo parse
  with them (``served_caption``) and log and skip what does not fit.

The rules (rules.py, docs/delivery.md):

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
    caption = served_caption(sse_data)

``WireError`` carries the problem's detail and its ``errors`` (``field``, ``message``).
The store's reads use ``scrub`` and ``stored_ms`` so that rows written before these rules
(or by hand) still render.
"""

from plenary.wire.producer import (
    JIGASI_EVENTS,
    JigasiAlternative,
    JigasiBody,
    JigasiParticipant,
    ProducerEvent,
    jigasi_body,
    producer_event,
)
from plenary.wire.rules import (
    MAX_DURATION_MS,
    MAX_MS,
    MAX_NAME,
    MAX_SECONDS,
    MAX_TEXT,
    MIN_MS,
    TIMESTAMP_WINDOW_MS,
    EpochMs,
    Flag,
    Ident,
    Name,
    Seconds,
    Text,
    WireError,
    WireModel,
    duration_ms,
    field_name,
    is_clean,
    json_body,
    sane_time,
    scrub,
    stored_ms,
    strip_controls,
    wire_error,
)
from plenary.wire.served import (
    ServedCaption,
    ServedCorrection,
    served_caption,
    served_correction,
)

__all__ = [
    "JIGASI_EVENTS",
    "MAX_DURATION_MS",
    "MAX_MS",
    "MAX_NAME",
    "MAX_SECONDS",
    "MAX_TEXT",
    "MIN_MS",
    "TIMESTAMP_WINDOW_MS",
    "EpochMs",
    "Flag",
    "Ident",
    "JigasiAlternative",
    "JigasiBody",
    "JigasiParticipant",
    "Name",
    "ProducerEvent",
    "Seconds",
    "ServedCaption",
    "ServedCorrection",
    "Text",
    "WireError",
    "WireModel",
    "duration_ms",
    "field_name",
    "is_clean",
    "jigasi_body",
    "json_body",
    "producer_event",
    "sane_time",
    "scrub",
    "served_caption",
    "served_correction",
    "stored_ms",
    "strip_controls",
    "wire_error",
]
