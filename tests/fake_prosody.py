"""A fake Prosody: posts what its event modules would post, over HTTP, to a real app.

Payload shapes were read from the module sources, not from Plenary's parser:

- jitsi-contrib/prosody-plugins ``event_sync/mod_event_sync_component.lua`` (stock
  event_sync): ``event_name``; ``room_name``/``room_jid``/``is_breakout`` and, for a
  breakout room, ``breakout_room_id`` (the breakout room's JID node), with ``room_*``
  the *main* room's (``event_sync_extra_payload``); ``created_at``/``destroyed_at``
  (``os.time()`` seconds); ``all_occupants`` on destroy; ``active_occupants_count``
  and ``occupant`` {``occupant_jid`` (the occupant's real full JID, ``event.occupant.jid``),
  ``joined_at``, ``left_at``, ``name``/``id``/``email`` from ``jitsi_meet_context_user``}.
  No meeting id and no MUC nick.
- Plenary's ``deploy/prosody/mod_plenary_occupants.lua``: the same shape plus
  ``source``, ``meeting_id`` (main room's ``room._data.meetingId``, set by jitsi-meet's
  ``mod_muc_meeting_id.lua``), for breakouts ``breakout_meeting_id``,
  ``breakout_room_jid``, ``breakout_room_name`` (the subject ``mod_muc_breakout_rooms``
  keeps), and ``occupant.endpoint_id`` (resource of ``occupant.nick``) and
  ``occupant.name_from = "token"``.

Both send ``Authorization: Bearer <secret>`` as configured through ``api_headers`` /
``plenary_api_secret``. tests/test_jitsi_events.py runs the real module under Lua 5.4
(tests/prosody_harness.lua) and checks that this fake sends the same fields.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

DOMAIN = "meet.example.org"
MUC = f"conference.{DOMAIN}"
BREAKOUT_MUC = f"breakout.{DOMAIN}"


@dataclass
class Room:
    name: str  # the MUC node, as Prosody has it (lower-cased)
    meeting_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    breakout_of: Room | None = None
    subject: str = ""
    node: str = ""

    def __post_init__(self) -> None:
        self.node = self.node or (str(uuid.uuid4()) if self.breakout_of else self.name)

    @property
    def jid(self) -> str:
        return f"{self.node}@{BREAKOUT_MUC if self.breakout_of else MUC}"


class FakeProsody:
    """``client`` is anything with ``post(path, data=..., headers=...)`` (aiohttp)."""

    def __init__(self, client: Any, secret: str, prefix: str = "/api/v1/events") -> None:
        self.client = client
        self.secret = secret
        self.prefix = prefix

    async def send(self, path: str, payload: dict[str, Any], secret: str | None = None) -> Any:
        headers = {"Content-Type": "application/json", "User-Agent": "Prosody (0.12.3; posix)"}
        token = self.secret if secret is None else secret
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return await self.client.post(
            self.prefix + path, data=json.dumps(payload).encode(), headers=headers
        )

    # ---- stock event_sync ----------------------------------------------------

    def event_sync_room(self, room: Room) -> dict[str, Any]:
        """``event_sync_extra_payload`` as handle_(main|breakout)_room_created sets it."""
        if room.breakout_of is None:
            return {"is_breakout": False, "room_jid": room.jid, "room_name": room.node}
        main = room.breakout_of
        return {
            "is_breakout": True,
            "breakout_room_id": room.node,
            "room_jid": main.jid,
            "room_name": main.node,
        }

    def event_sync_occupant(self, user: dict[str, Any] | None) -> dict[str, Any]:
        occupant: dict[str, Any] = {
            "occupant_jid": f"{uuid.uuid4()}@{DOMAIN}/{uuid.uuid4().hex[:8]}",
            "joined_at": int(time.time()),
        }
        for key in ("name", "id", "email"):
            if user and key in user:
                occupant[key] = user[key]
        return occupant

    async def event_sync_joined(self, room: Room, user: dict[str, Any] | None) -> Any:
        payload = {
            "event_name": "muc-occupant-joined",
            "occupant": self.event_sync_occupant(user),
            "active_occupants_count": 1,
            **self.event_sync_room(room),
        }
        return await self.send("/occupant/joined", payload)

    async def event_sync_created(self, room: Room) -> Any:
        payload = {
            "event_name": "muc-room-created",
            "created_at": int(time.time()),
            **self.event_sync_room(room),
        }
        return await self.send("/room/created", payload)

    # ---- mod_plenary_occupants -----------------------------------------------

    def plenary_room(self, room: Room) -> dict[str, Any]:
        fields = {"source": "mod_plenary_occupants", **self.event_sync_room(room)}
        if room.breakout_of is None:
            fields["meeting_id"] = room.meeting_id
        else:
            fields["meeting_id"] = room.breakout_of.meeting_id
            fields["breakout_meeting_id"] = room.meeting_id
            fields["breakout_room_jid"] = room.jid
            fields["breakout_room_name"] = room.subject
        return fields

    async def room_created(self, room: Room) -> Any:
        payload = {
            "event_name": "muc-room-created",
            "created_at": int(time.time()),
            **self.plenary_room(room),
        }
        return await self.send("/room/created", payload)

    async def room_destroyed(self, room: Room) -> Any:
        now = int(time.time())
        payload = {
            "event_name": "muc-room-destroyed",
            "created_at": now - 60,
            "destroyed_at": now,
            **self.plenary_room(room),
        }
        return await self.send("/room/destroyed", payload)

    async def occupant_joined(
        self, room: Room, endpoint: str, user: dict[str, Any] | None, count: int = 1
    ) -> Any:
        """``user`` is the JWT context.user of the joining session (None: no token)."""
        occupant: dict[str, Any] = {
            "occupant_jid": f"{uuid.uuid4()}@{DOMAIN}/{uuid.uuid4().hex[:8]}",
            "endpoint_id": endpoint,
            "joined_at": int(time.time()),
        }
        if user:
            occupant.update({k: user[k] for k in ("id", "name", "email") if k in user})
            occupant["name_from"] = "token"
        payload = {
            "event_name": "muc-occupant-joined",
            "active_occupants_count": count,
            "occupant": occupant,
            **self.plenary_room(room),
        }
        return await self.send("/occupant/joined", payload)

    async def occupant_left(self, room: Room, endpoint: str) -> Any:
        now = int(time.time())
        payload = {
            "event_name": "muc-occupant-left",
            "active_occupants_count": 0,
            "occupant": {
                "occupant_jid": f"x@{DOMAIN}/r",
                "endpoint_id": endpoint,
                "left_at": now,
            },
            **self.plenary_room(room),
        }
        return await self.send("/occupant/left", payload)
