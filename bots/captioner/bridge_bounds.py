"""What a slow or hostile Jitsi bridge can cost the captioner, and no more.

Bounded queues and logs for one bridge session: ``Outbox`` (results waiting for the
socket), ``LogLimiter`` (one warning per kind per 10 s) and ``PacketHealth`` (when a
participant's undecodable packets get its audio refused). How many participants a
session may hold (``captioner.bridge_max_sources`` and its fair share of
``captioner.max_streams``) is decided by the engine's budget, admission.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

from aiohttp import web

log = logging.getLogger(__name__)

QUEUE_PACKETS = 500  # 10 s of audio per participant; beyond it recognition is behind
CAUGHT_UP = 25  # queued packets (0.5 s) of a participant that is keeping up with its speaker
MAX_ERRORS = 50  # consecutive undecodable packets (1 s) before a participant is refused
MOSTLY_BAD = 25  # after this many packets, a participant with more bad than good is refused
STUCK_WRITER = 30.0  # seconds a send may block (peer not reading) before the socket is dropped


class LogLimiter:
    """At most one line per key per ``every`` seconds, saying how many were held back."""

    def __init__(self, every: float = 10.0) -> None:
        self._every = every
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -self._every) < self._every:
            self._held[key] = self._held.get(key, 0) + 1
            return
        held = self._held.pop(key, 0)
        self._last[key] = now
        suffix = f" (and {held} more like it)" if held else ""
        log.warning(message + suffix, *args)


class PacketHealth:
    """A participant's packets, good and bad: when the bad ones get its audio refused."""

    def __init__(self) -> None:
        self.packets = 0  # every media packet received
        self.bad = 0
        self.bad_in_a_row = 0  # since the last packet Opus decoded

    def received(self) -> None:
        self.packets += 1

    def decoded(self) -> None:
        self.bad_in_a_row = 0

    def bad_packet(self, reason: str) -> str | None:
        """Count one undecodable packet; why the participant is now refused, or None."""
        self.bad += 1
        self.bad_in_a_row += 1
        if self.bad_in_a_row >= MAX_ERRORS:
            return f"{self.bad_in_a_row} undecodable packets in a row ({reason})"
        if self.packets >= MOSTLY_BAD and self.bad * 2 > self.packets:
            return f"{self.bad} of {self.packets} packets undecodable ({reason})"
        return None


class Outbox:
    """Results waiting for the socket; pongs jump the queue. Bounded: a peer that stops
    reading loses its oldest results, never the captioner's memory."""

    def __init__(self, limit: int = 1000) -> None:
        self._items: deque[str] = deque()
        self._urgent: deque[str] = deque(maxlen=16)
        self._limit = limit
        self._ready = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self.sending_since: float | None = None

    def put(self, text: str, *, urgent: bool = False) -> None:
        if urgent:
            self._urgent.append(text)
        else:
            if len(self._items) >= self._limit:
                self._items.popleft()
            self._items.append(text)
        self._ready.set()
        self._empty.clear()

    def clear_urgent(self) -> None:
        self._urgent.clear()

    def stuck(self, now: float) -> bool:
        """A send has been blocked for longer than STUCK_WRITER (the peer reads nothing)."""
        return self.sending_since is not None and now - self.sending_since > STUCK_WRITER

    async def pump(self, ws: web.WebSocketResponse, current: Callable[[], bool]) -> None:
        """Send until the socket is no longer the session's (one pump per socket)."""
        while current():
            await self._ready.wait()
            while current() and (self._urgent or self._items):
                text = self._urgent.popleft() if self._urgent else self._items.popleft()
                self.sending_since = time.monotonic()
                await ws.send_str(text)
                self.sending_since = None
            if not (self._urgent or self._items):
                self._ready.clear()
                self._empty.set()

    async def sent(self) -> None:
        """Wait until everything queued has been written."""
        await self._empty.wait()
