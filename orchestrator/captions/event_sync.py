"""Prosody's meeting and occupant posts (docs/protocols.md §2b), parsed without I/O.

Two senders post the same shape to ``/api/v1/events/{room/created, room/destroyed,
occupant/joined, occupant/left}``: jitsi-contrib's ``event_sync`` component and
Plenary's ``mod_plenary_occupants``. Only the second carries what captions need: the
meeting id the videobridge names its session by (``meeting_id``, and a breakout room's
own ``breakout_meeting_id``) and the occupant's MUC nick, which is the videobridge
endpoint id (``occupant.endpoint_id``). A stock event_sync post parses fine and is
acknowledged; ``Post.usable`` says whether it can map anything.

    post = parse("occupant/joined", body)
    post.meeting_key, post.room_key, post.occupant.endpoint_id
    # ('4b0c…', 'keynote', 'a1b2c3d4')

A body that does not fit raises ``EventSyncError`` naming the field, before anything
is stored. docs/jitsi-events.md says which module sends what.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from orchestrator.captions.jigasi import JigasiError, room_from_jid

KINDS = {
    "room/created": "muc-room-created",
    "room/destroyed": "muc-room-destroyed",
    "occupant/joined": "muc-occupant-joined",
    "occupant/left": "muc-occupant-left",
}
# What mod_plenary_occupants puts in ``occupant.name_from`` for a name from the JWT.
NAME_FROM_JWT = "token"
# Jitsi breakout rooms are named by a UUID; endpoint ids are short hex or word strings.
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_MEETING = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


class EventSyncError(ValueError):
    """The post is not one Plenary understands; the message names the field."""


def _text_id(value: object) -> object:
    """JWT ``context.user.id`` may be a number in tokens Plenary did not issue."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


UserId = Annotated[str, BeforeValidator(_text_id)]
Seconds = Annotated[float, Field(ge=0)]  # Prosody's os.time()


class Occupant(BaseModel):
    model_config = ConfigDict(extra="ignore")

    occupant_jid: str = Field(min_length=1, max_length=3071)
    joined_at: Seconds | None = None
    left_at: Seconds | None = None
    # From the JWT context.user (event_sync copies it; so does Plenary's module).
    id: UserId | None = Field(None, max_length=256)
    name: str | None = Field(None, max_length=256)
    email: str | None = Field(None, max_length=320)
    # mod_plenary_occupants only: the MUC nick's resource (= videobridge endpoint id),
    # and where ``name`` came from ("token": the JWT context.user, never presence).
    endpoint_id: str | None = Field(None, pattern=_ID.pattern)
    name_from: str | None = None


class Post(BaseModel):
    model_config = ConfigDict(extra="ignore")

    event_name: Literal[
        "muc-room-created", "muc-room-destroyed", "muc-occupant-joined", "muc-occupant-left"
    ]
    room_name: str = Field(min_length=1, max_length=1023)
    room_jid: str = Field(min_length=1, max_length=3071)
    is_breakout: bool = False
    breakout_room_id: str | None = Field(None, pattern=_ID.pattern)
    created_at: Seconds | None = None
    destroyed_at: Seconds | None = None
    active_occupants_count: int | None = Field(None, ge=0)
    occupant: Occupant | None = None
    # Added by mod_plenary_occupants (not sent by stock event_sync):
    source: str = ""
    meeting_id: str | None = Field(None, pattern=_MEETING.pattern)
    breakout_meeting_id: str | None = Field(None, pattern=_MEETING.pattern)
    breakout_room_jid: str | None = Field(None, max_length=3071)
    breakout_room_name: str | None = Field(None, max_length=256)

    @property
    def main_room(self) -> str:
        """The main room's key: the Plenary room slug for rooms Plenary made."""
        try:
            return room_from_jid(self.room_jid if "@" in self.room_jid else self.room_name)
        except JigasiError as exc:
            raise EventSyncError(f"room_jid: {exc}") from None

    @property
    def room_key(self) -> str:
        """Where this room's captions are filed; a breakout room gets its own key."""
        if not self.is_breakout:
            return self.main_room
        return breakout_key(self.main_room, self.breakout_room_id or "")

    @property
    def meeting_key(self) -> str:
        """The meeting id the videobridge uses as sessionId for this (breakout) room."""
        return (self.breakout_meeting_id if self.is_breakout else self.meeting_id) or ""

    @property
    def usable(self) -> bool:
        """True when the post can map a meeting (and, for occupants, an endpoint)."""
        if not self.meeting_key:
            return False
        if self.occupant is not None:
            return bool(self.occupant.endpoint_id)
        return True

    @property
    def token_name(self) -> str:
        """The occupant's display name if the sender says it came from the JWT."""
        who = self.occupant
        if who is None or who.name_from != NAME_FROM_JWT or not who.name:
            return ""
        return " ".join("".join(c for c in who.name if c.isprintable() or c.isspace()).split())


def breakout_key(main_room: str, breakout_id: str) -> str:
    """``keynote`` + breakout ``5f0e…`` → ``keynote.breakout-5f0e…``.

    Room slugs never hold a dot (orchestrator/rooms/model.py), so a breakout key
    cannot name, or collide with, any Plenary room.
    """
    return f"{main_room}.breakout-{breakout_id.lower()}"


def parse(kind: str, body: bytes) -> Post:
    """Parse a post to ``/api/v1/events/<kind>``; ``kind`` as in ``KINDS``."""
    expected = KINDS.get(kind)
    if expected is None:
        raise EventSyncError(f"unknown event path {kind!r}; use one of {', '.join(KINDS)}")
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise EventSyncError(f"body is not UTF-8: {exc.reason}") from None
    except json.JSONDecodeError as exc:
        raise EventSyncError(f"body is not JSON: {exc.msg} at character {exc.pos}") from None
    if not isinstance(data, dict):
        raise EventSyncError("body must be a JSON object")
    try:
        post = Post.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise EventSyncError(f"{where}: {first['msg']}") from None
    if post.event_name != expected:
        raise EventSyncError(
            f"event_name: {post.event_name!r} posted to {kind}; expected {expected!r}"
        )
    if kind.startswith("occupant/") and post.occupant is None:
        raise EventSyncError("occupant: an occupant event needs the occupant object")
    if post.is_breakout and not post.breakout_room_id:
        raise EventSyncError("breakout_room_id: a breakout room's post needs its id")
    post.main_room  # noqa: B018  (raises EventSyncError for an unusable room name)
    return post
