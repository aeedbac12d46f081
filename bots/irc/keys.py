"""Channel keys of restricted rooms, from the orchestrator (orchestrator/irc_channels.py),
and the coordination of relays (orchestrator/irc_relay_api.py).

    channels = OrchestratorChannels("http://127.0.0.1:8080", token, session)
    table = await channels.fetch()        # {room: RoomChannel(restricted, key, title, …)}
    await channels.report("devroom", False, "not a channel operator")
    lease = await channels.lease("#devroom", holder)  # Lease(held, holder, ttl, expires_in)
    await channels.save_position("devroom", 42)       # raised only; → the stored one
    await channels.position("devroom")                # → 42
    await channels.release("#devroom", holder)

Every call sends ``Authorization: Bearer <irc.orchestrator_token>`` (one of the
orchestrator's ``captions.service_readers``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp


@dataclass(frozen=True, slots=True)
class RoomChannel:
    """One row of the table: what the relay needs of a room beyond its channel."""

    restricted: bool
    key: str
    title: str = ""  # the room's title ("" from an orchestrator that does not say)
    timezone: str = ""  # IANA zone of the room's schedule, the transcript's times
    transcript_url: str = ""  # the room's transcripts page


class ChannelDirectory(Protocol):
    async def fetch(self) -> dict[str, RoomChannel]: ...

    async def report(self, room: str, protected: bool, detail: str) -> None: ...


class KeysError(Exception):
    """The orchestrator did not answer with the channel table (or as asked)."""


@dataclass(frozen=True, slots=True)
class Lease:
    """The orchestrator's answer about a channel's relay lease."""

    held: bool  # whether the asking relay holds it now
    holder: str
    ttl: float  # seconds the lease lasts from the asking
    expires_in: float  # seconds until it runs out (the holder's, when not held)


class RelayCoordinator(Protocol):
    """Where relays agree who serves each channel and where each room stands."""

    async def lease(self, channel: str, holder: str, ttl: float | None = None) -> Lease: ...

    async def release(self, channel: str, holder: str) -> None: ...

    async def position(self, room: str) -> int: ...

    async def save_position(self, room: str, position: int) -> int: ...


def parse_table(body: Any) -> dict[str, RoomChannel]:
    """{room: RoomChannel} from ``GET /api/v1/irc/channels``; KeysError if malformed."""
    rows = body.get("channels") if isinstance(body, dict) else None
    if not isinstance(rows, list):
        raise KeysError("the answer has no list 'channels'")
    table: dict[str, RoomChannel] = {}
    for row in rows:
        if not isinstance(row, dict):
            raise KeysError(f"not a channel: {row!r}")
        room, restricted, key = row.get("room"), row.get("restricted"), row.get("key", "")
        if not isinstance(room, str) or not isinstance(restricted, bool):
            raise KeysError(f"a channel without room or restricted: {row!r}")
        if not isinstance(key, str) or any(c in key for c in " ,:\r\n\0"):
            raise KeysError(f"room {room!r}: a key IRC cannot carry")
        about = {name: row.get(name, "") for name in ("title", "timezone", "transcript_url")}
        for name, value in about.items():
            if not isinstance(value, str):
                raise KeysError(f"room {room!r}: {name} is not a string")
        table[room] = RoomChannel(restricted, key, **about)
    return table


class OrchestratorChannels:
    def __init__(self, base_url: str, token: str, session: aiohttp.ClientSession) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=15)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def fetch(self) -> dict[str, RoomChannel]:
        url = f"{self.base_url}/api/v1/irc/channels"
        async with self.session.get(url, headers=self._headers(), timeout=self.timeout) as r:
            if r.status != 200:
                detail = (await r.text())[:300]
                raise KeysError(f"{url}: HTTP {r.status}: {detail}")
            return parse_table(await r.json())

    async def report(self, room: str, protected: bool, detail: str) -> None:
        url = f"{self.base_url}/api/v1/irc/channels/{quote(room, safe='')}/state"
        body = {"protected": protected, "detail": detail}
        async with self.session.put(
            url, json=body, headers=self._headers(), timeout=self.timeout
        ) as r:
            if r.status >= 300:
                raise KeysError(f"{url}: HTTP {r.status}: {(await r.text())[:300]}")

    def _url(self, kind: str, name: str) -> str:
        return f"{self.base_url}/api/v1/irc/{kind}/{quote(name, safe='')}"

    async def lease(self, channel: str, holder: str, ttl: float | None = None) -> Lease:
        """Take or renew ``channel``'s lease (``ttl`` None: the orchestrator's
        ``orchestrator.lease_seconds``)."""
        body: dict[str, Any] = {"holder": holder}
        if ttl is not None:
            body["ttl"] = ttl
        url = self._url("leases", channel)
        async with self.session.post(
            url, json=body, headers=self._headers(), timeout=self.timeout
        ) as r:
            if r.status not in (200, 409):
                raise KeysError(f"{url}: HTTP {r.status}: {(await r.text())[:300]}")
            got = await r.json(content_type=None)
        try:
            return Lease(
                held=r.status == 200 and got["held"] is True,
                holder=str(got["holder"]),
                ttl=int(got["ttl_ms"]) / 1000,
                expires_in=int(got["expires_in_ms"]) / 1000,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise KeysError(f"{url}: not a lease: {exc}") from None

    async def release(self, channel: str, holder: str) -> None:
        url = self._url("leases", channel)
        async with self.session.delete(
            url, params={"holder": holder}, headers=self._headers(), timeout=self.timeout
        ) as r:
            if r.status != 200:
                raise KeysError(f"{url}: HTTP {r.status}: {(await r.text())[:300]}")

    async def position(self, room: str) -> int:
        """The room's delivered position as the orchestrator keeps it (0: none)."""
        url = self._url("positions", room)
        async with self.session.get(url, headers=self._headers(), timeout=self.timeout) as r:
            if r.status != 200:
                raise KeysError(f"{url}: HTTP {r.status}: {(await r.text())[:300]}")
            return _position(url, await r.json())

    async def save_position(self, room: str, position: int) -> int:
        """Raise the room's delivered position; the stored one (never lower)."""
        url = self._url("positions", room)
        async with self.session.put(
            url, json={"position": position}, headers=self._headers(), timeout=self.timeout
        ) as r:
            if r.status != 200:
                raise KeysError(f"{url}: HTTP {r.status}: {(await r.text())[:300]}")
            return _position(url, await r.json())


def _position(url: str, body: Any) -> int:
    value = body.get("position") if isinstance(body, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise KeysError(f"{url}: no position in the answer")
    return value
