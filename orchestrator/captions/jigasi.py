"""Jigasi's ``SEND_JSON_REMOTE_URLS`` posts (PROTOCOLS.md §2), parsed without I/O.

    post = parse(b'{"event":"START","room_name":"keynote@conference.example.org",'
                 b'"timestamp":1700000000000}')
    post.event, post.room  # ('START', 'keynote')

A body that is not exactly one of the documented shapes raises ``JigasiError``
with a message naming what is wrong, before anything is stored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any

EVENTS = ("SPEECH", "JOIN", "LEAVE", "START", "END", "RAISE_HAND", "WILL_END")
FALLBACK_NAME = "Fellow Jitser"
_TENANT = re.compile(r"\[([^\]]+)\](.+)")


class JigasiError(ValueError):
    """The post is not one Plenary understands; the message says why."""


@dataclass(frozen=True, slots=True)
class Participant:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class JigasiPost:
    event: str
    room: str
    timestamp_ms: int | None
    participant: Participant | None = None
    text: str = ""
    language: str = ""
    message_id: str = ""
    is_interim: bool = False
    room_jid: str = ""  # as posted, lower-cased: a breakout room is known by its JID


def room_from_jid(jid: str) -> str:
    """The Plenary room of a MUC JID: its local part, lower-cased.

    ``Keynote@conference.meet.example.org`` → ``keynote``. The one place that knows
    how Jitsi room names map to Plenary rooms. A tenant's room (``[acme]keynote``,
    Jitsi's muc_domain_mapper form) is ``acme~keynote``: never a Plenary slug, so
    another tenant's meeting cannot land in a Plenary room of the same name.
    """
    local = jid.split("@", 1)[0].strip().lower()
    tenant = _TENANT.fullmatch(local)
    if tenant:
        local = f"{tenant[1]}~{tenant[2]}"
    if not local or any(c in local for c in "/\\?# \t\r\n\0"):
        raise JigasiError(f"room_name {jid!r} has no usable room part")
    return local


def parse(body: bytes) -> JigasiPost:
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise JigasiError(f"body is not UTF-8: {exc.reason}") from exc
    except json.JSONDecodeError as exc:
        raise JigasiError(f"body is not JSON: {exc.msg} at character {exc.pos}") from exc
    if not isinstance(data, dict):
        raise JigasiError("body must be a JSON object")
    event = data.get("event")
    if event not in EVENTS:
        raise JigasiError(f"event must be one of {', '.join(EVENTS)}; got {event!r}")
    room_name = data.get("room_name")
    if not isinstance(room_name, str):
        raise JigasiError("room_name (the room's JID) is missing or not a string")
    room = room_from_jid(room_name)
    timestamp = data.get("timestamp")
    if timestamp is not None and (isinstance(timestamp, bool) or not isinstance(timestamp, int)):
        raise JigasiError("timestamp must be epoch milliseconds (an integer)")
    if event in ("RAISE_HAND", "WILL_END", "START", "END"):
        return JigasiPost(event, room, timestamp, room_jid=room_name.strip().lower())
    participant = _participant(data.get("participant"))
    if event in ("JOIN", "LEAVE"):
        return JigasiPost(event, room, timestamp, participant, room_jid=room_name.strip().lower())
    return replace(_speech(data, room, timestamp, participant), room_jid=room_name.strip().lower())


def _participant(value: Any) -> Participant:
    if not isinstance(value, dict):
        raise JigasiError("participant must be an object")
    pid = value.get("id", "")
    name = value.get("name")
    if not isinstance(pid, str):
        raise JigasiError("participant.id must be a string")
    if name is not None and not isinstance(name, str):
        raise JigasiError("participant.name must be a string")
    return Participant(pid, (name or "").strip() or FALLBACK_NAME)


def _speech(
    data: dict[str, Any], room: str, timestamp: int | None, participant: Participant
) -> JigasiPost:
    transcript = data.get("transcript")
    if not isinstance(transcript, list) or not transcript:
        raise JigasiError("transcript must be a non-empty list of {text, confidence}")
    best = transcript[0]
    if not isinstance(best, dict) or not isinstance(best.get("text"), str):
        raise JigasiError("transcript[0].text must be a string")
    language = data.get("language", "")
    message_id = data.get("message_id", "")
    interim = data.get("is_interim", False)
    if not isinstance(language, str) or not isinstance(message_id, str):
        raise JigasiError("language and message_id must be strings")
    if not isinstance(interim, bool):
        raise JigasiError("is_interim must be true or false")
    return JigasiPost(
        "SPEECH",
        room,
        timestamp,
        participant,
        text=best["text"],
        language=language,
        message_id=message_id,
        is_interim=interim,
    )
