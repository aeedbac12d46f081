"""The Jitsi videobridge's MediaJson protocol (docs/protocols.md §1b): parse frames, shape results.

Pure functions, no I/O. The bridge sends text frames only; numbers such as
``sequenceNumber``, ``chunk`` and ``timestamp`` arrive as JSON strings holding
integers, and new bridges add fields and events over time, so parsing is liberal
about what it ignores and strict about what it uses:

>>> parse_frame('{"event":"ping","id":7}')
Ping(id=7)
>>> pong(7)
'{"event":"pong","id":7}'
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# RFC 6464 levels are -dBov: 0 is the loudest, 127 digital silence. A packet at -90 dBov
# or quieter is far below the VAD's energy floor (-50 dBFS), so it need not be decoded.
QUIET_LEVEL = 90


class FrameError(Exception):
    """A frame or one of its fields is unusable; the message says why (for a log line)."""


@dataclass(frozen=True, slots=True)
class Info:
    application: str
    version: str
    region: str


@dataclass(frozen=True, slots=True)
class Start:
    """An audio source (``tag``) begins or changes format."""

    tag: str
    encoding: str
    sample_rate: int
    channels: int
    endpoint_id: str


@dataclass(frozen=True, slots=True)
class Media:
    """One RTP packet of one source; ``payload`` is still base64 (see ``decode_payload``)."""

    tag: str
    chunk: int | None  # RTP sequence number, 16 bits, wraps
    timestamp: int | None  # RTP timestamp, 48 kHz units for Opus, 32 bits, wraps
    payload: str
    audio_level: int | None = None  # RFC 6464 -dBov, when the bridge sends it
    vad: bool | None = None  # the sender's voice-activity flag, when the bridge sends it


@dataclass(frozen=True, slots=True)
class Ping:
    id: int | str | None


@dataclass(frozen=True, slots=True)
class SessionEnd:
    pass


@dataclass(frozen=True, slots=True)
class Unknown:
    """An event Plenary does not know; log it and carry on."""

    event: str


Message = Info | Start | Media | Ping | SessionEnd | Unknown


@dataclass(frozen=True, slots=True)
class Query:
    """The websocket URL's query, as Jicofo's url-template and per-room urlParams build it."""

    session_id: str | None
    send_back: bool
    send_back_interim: bool
    language: str | None
    tags: tuple[str, ...]  # session labels (the reference service passes them to its backend)
    room: str | None = None  # Plenary room, when a per-room urlParam names it (else the meeting)


def parse_query(query: Mapping[str, str], tags: Sequence[str] = ()) -> Query:
    """``query`` is the URL's parameters; ``tags`` every value of the repeatable ``tag``."""
    return Query(
        session_id=query.get("sessionId") or None,
        send_back=query.get("sendBack") == "true",
        send_back_interim=query.get("sendBackInterim") == "true",
        language=query.get("lang") or None,
        tags=tuple(t[:128] for t in tags),
        room=_room(query.get("room")),
    )


_ROOM = re.compile(r"[a-z0-9._-]{1,64}")


def _room(value: str | None) -> str | None:
    """A room name as Jitsi allows it; anything else is ignored (the meeting id is used)."""
    if value is None:
        return None
    value = value.lower()
    return value if _ROOM.fullmatch(value) else None


def parse_frame(frame: str) -> Message:
    try:
        data = json.loads(frame)
    except (ValueError, RecursionError):
        raise FrameError("frame is not JSON") from None
    if not isinstance(data, dict):
        raise FrameError("frame is not a JSON object")
    event = data.get("event")
    if event == "media":
        return _media(data.get("media"))
    if event == "ping":
        ident = data.get("id")
        return Ping(ident if isinstance(ident, int | str) and not isinstance(ident, bool) else None)
    if event == "start":
        return _start(data.get("start"))
    if event == "info":
        return Info(
            application=str(data.get("application", "")),
            version=str(data.get("version", "")),
            region=str(data.get("region", "")),
        )
    if event == "session-end":
        return SessionEnd()
    if not isinstance(event, str):
        raise FrameError("frame has no event")
    return Unknown(_show(event))


def _start(value: Any) -> Start:
    if not isinstance(value, dict):
        raise FrameError("start without a start object")
    tag = _tag(value.get("tag"))
    fmt = value.get("mediaFormat")
    fmt = fmt if isinstance(fmt, dict) else {}
    custom = value.get("customParameters")
    custom = custom if isinstance(custom, dict) else {}
    endpoint = custom.get("endpointId")
    return Start(
        tag=tag,
        encoding=str(fmt.get("encoding", "opus")).lower(),
        sample_rate=_int(fmt.get("sampleRate", 48000), "sampleRate"),
        channels=_int(fmt.get("channels", 2), "channels"),
        endpoint_id=endpoint if isinstance(endpoint, str) and endpoint else endpoint_id(tag),
    )


def _media(value: Any) -> Media:
    if not isinstance(value, dict):
        raise FrameError("media without a media object")
    payload = value.get("payload")
    if not isinstance(payload, str):
        raise FrameError("media without a payload string")
    chunk = value.get("chunk")
    timestamp = value.get("timestamp")
    level = value.get("audioLevel")
    vad = value.get("vad")
    return Media(
        tag=_tag(value.get("tag")),
        chunk=None if chunk is None else _int(chunk, "chunk") & 0xFFFF,
        timestamp=None if timestamp is None else _int(timestamp, "timestamp") & 0xFFFFFFFF,
        payload=payload,
        audio_level=None if level is None else _int(level, "audioLevel"),
        vad=vad if isinstance(vad, bool) else None,
    )


def _tag(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 256:
        raise FrameError("missing or invalid tag")
    return value


def _int(value: Any, name: str) -> int:
    """Integers arrive as JSON strings ("31456") or, from other senders, as numbers."""
    if isinstance(value, bool):
        raise FrameError(f"{name} is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and len(value) <= 20:
        try:
            return int(value)
        except ValueError:
            pass
    raise FrameError(f"{name} {_show(value)} is not an integer")


_ENDPOINT = re.compile(r"^([0-9A-Za-z]+)-")


def endpoint_id(tag: str) -> str:
    """The participant's endpoint id: the tag's prefix before ``-`` (``ab12-a0`` → ``ab12``)."""
    match = _ENDPOINT.match(tag)
    return match.group(1) if match else tag


def decode_payload(media: Media) -> bytes:
    """The Opus packet; FrameError for invalid base64."""
    try:
        return base64.b64decode(media.payload, validate=True)
    except (binascii.Error, ValueError):
        raise FrameError("payload is not valid base64") from None


def is_silent(media: Media, quiet_level: int = QUIET_LEVEL) -> bool:
    """The bridge says this packet holds no speech: ``vad: false`` or a level this quiet."""
    if media.vad is False:
        return True
    return media.audio_level is not None and media.audio_level >= quiet_level


def pong(ident: int | str | None) -> str:
    return _dump({"event": "pong", "id": ident} if ident is not None else {"event": "pong"})


def transcription_result(
    *,
    message_id: str,
    text: str,
    confidence: float | None,
    is_interim: bool,
    endpoint: str,
    tag: str,
    timestamp_ms: int,
    language: str,
) -> str:
    """A result as the bridge relays it: both ``event`` and ``type`` (each has its reader).

    ``confidence`` is left out when there is none (interim results), as the reference
    service does."""
    alternative: dict[str, Any] = {"text": text}
    if confidence is not None:
        alternative["confidence"] = round(confidence, 3)
    return _dump(
        {
            "event": "transcription-result",
            "type": "transcription-result",
            "message_id": message_id,
            "is_interim": is_interim,
            "transcript": [alternative],
            "participant": {"id": endpoint, "tag": tag},
            "timestamp": timestamp_ms,
            "language": language,
        }
    )


def _dump(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
