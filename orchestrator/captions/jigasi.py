"""Jigasi's ``SEND_JSON_REMOTE_URLS`` posts (docs/protocols.md §2), parsed without I/O.

    post = parse(b'{"event":"START","room_name":"keynote@conference.example.org",'
                 b'"timestamp":1700000000000}')
    post.event, post.room  # ('START', 'keynote')

A body that is not exactly one of the documented shapes raises ``JigasiError``
with a message naming what is wrong, before anything is stored. Strings, numbers and
control characters follow the wire rules of every producer input (plenary/wire).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from plenary import wire

EVENTS = wire.JIGASI_EVENTS
FALLBACK_NAME = "Fellow Jitser"
_TENANT = re.compile(r"\[([^\]]+)\](.+)")


class JigasiError(wire.WireError):
    """The post is not one Plenary understands; the message names the field."""


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
    """Read by ``wire.JigasiBody`` (the rules every producer input follows, and which
    events carry a participant or a transcript); the Plenary room of its JID."""
    try:
        post = wire.jigasi_body(body)
    except wire.WireError as exc:
        raise JigasiError(exc.detail, exc.errors) from None
    room = room_from_jid(post.room_name)
    jid = post.room_name.strip().lower()
    if post.event in ("RAISE_HAND", "WILL_END", "START", "END"):
        return JigasiPost(post.event, room, post.timestamp, room_jid=jid)
    assert post.participant is not None  # JigasiBody: JOIN, LEAVE and SPEECH name who
    who = Participant(post.participant.id, (post.participant.name or "").strip() or FALLBACK_NAME)
    if post.event in ("JOIN", "LEAVE"):
        return JigasiPost(post.event, room, post.timestamp, who, room_jid=jid)
    assert post.transcript  # JigasiBody: a SPEECH has at least one alternative
    return JigasiPost(
        "SPEECH",
        room,
        post.timestamp,
        who,
        text=post.transcript[0].text,
        language=post.language,
        message_id=post.message_id,
        is_interim=post.is_interim,
        room_jid=jid,
    )
