"""Live fan-out across orchestrator nodes: "room R has new rows up to position P".

Every node serves every room's live streams from its own ``FanOut`` (plenary/fanout.py).
A ``LiveBus`` is how a stored caption or correction reaches the ``FanOut`` of every node,
not only of the node that accepted it (docs/scaling.md):

- ``announce(conn, room, pos)`` is called by the store inside the transaction that
  stores the row at ``pos`` (its stream position: a caption's number, a correction's
  own number);
- ``delivered(item)`` is called by the node that stored ``item`` once it is committed;
- on every node, items reach the local ``FanOut`` once each, in position order.

``InProcessBus`` (the embedded SQLite default, one node) publishes what this node
stored and nothing else. ``PostgresBus`` sends ``NOTIFY plenary_captions`` with
``{"room", "pos"}`` in the storing transaction, so it is delivered on commit only; each
node LISTENs on its own asyncpg connection and, for a room with live readers here,
reads the rows after the last position it published for that room from the database
and publishes them in order. A notification that comes late, twice or never (a
coalesced or lost one) therefore loses and reorders nothing: the next one, or the
catch-up after a reconnect, reads every row since. A NATS JetStream or Redis Streams
bus would do the same with ``announce`` a no-op and ``delivered`` publishing
``{"room", "pos"}`` after commit.

A room without live readers on a node is not read: its last published position just
moves on (a reader that subscribes later reads its backlog from the database first).
Rooms that keep no transcript have no rows: their captions stay on the node that took
them (``Captions`` publishes them directly), by design.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import asyncpg
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.captions.model import Item
from orchestrator.captions.store import CaptionStore
from orchestrator.db import Database
from orchestrator.schema import caption_counters
from plenary.fanout import FanOut

log = logging.getLogger(__name__)

CHANNEL = "plenary_captions"
APPLICATION_NAME = "plenary live bus"  # the listener connection, in pg_stat_activity
PAGE = 500
PING_SECONDS = 5.0  # how often the listener connection is checked (a dead server is silent)
RECONNECT_FIRST, RECONNECT_MAX = 0.2, 5.0

# What the store calls inside the transaction that stores a row (room, stream position).
Announce = Callable[[AsyncConnection, str, int], Awaitable[None]]


class LiveBus(Protocol):
    async def start(self) -> None:
        """Begin receiving other nodes' rows (returns once listening, or on failure)."""

    async def announce(self, conn: AsyncConnection, room: str, pos: int) -> None:
        """Inside the storing transaction: room ``room`` has a row at ``pos``."""

    async def delivered(self, item: Item) -> None:
        """This node stored ``item`` (committed): publish it here, in order, once."""

    async def close(self) -> None: ...


class InProcessBus:
    """One node: what it stores is all there is."""

    def __init__(self, hub: FanOut[Item]) -> None:
        self.hub = hub

    async def start(self) -> None:
        return None

    async def announce(self, conn: AsyncConnection, room: str, pos: int) -> None:
        return None

    async def delivered(self, item: Item) -> None:
        self.hub.publish(item)

    async def close(self) -> None:
        return None


class PostgresBus:
    """LISTEN/NOTIFY on ``plenary_captions``; rows read from the database (module doc)."""

    def __init__(self, hub: FanOut[Item], db: Database, store: CaptionStore) -> None:
        self.hub = hub
        self.db = db
        self.store = store
        self.published: dict[str, int] = {}  # room → last position published (or passed)
        self._wanted: dict[str, int] = {}  # room → highest position notified
        self._locks: dict[str, asyncio.Lock] = {}
        self._pumps: dict[str, asyncio.Task[None]] = {}
        self._listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.reconnects = 0
        self._backoff = RECONNECT_FIRST

    # ---- the storing node -----------------------------------------------------------

    async def announce(self, conn: AsyncConnection, room: str, pos: int) -> None:
        payload = json.dumps({"room": room, "pos": pos}, ensure_ascii=False)
        await conn.execute(select(func.pg_notify(CHANNEL, payload)))

    async def delivered(self, item: Item) -> None:
        room, pos = item.room, item.position
        async with self._lock(room):
            last = self.published.get(room, 0)
            if pos <= last:
                return  # its notification came first and published it
            if pos == last + 1 or not self._watched(room):
                self.hub.publish(item)
                self.published[room] = pos
            else:  # another node's rows come before it: read them (and it) in order
                await self._catch_up(room, pos)

    # ---- every node: notifications ----------------------------------------------------

    def _notified(self, room: str, pos: int) -> None:
        if pos <= self.published.get(room, 0):
            return  # this node's own, or already read
        self._wanted[room] = max(self._wanted.get(room, 0), pos)
        if room not in self._pumps:
            self._pumps[room] = asyncio.get_running_loop().create_task(self._pump(room))

    async def _pump(self, room: str) -> None:
        """Publish the room's rows until every notified position is passed."""
        try:
            while self._wanted.get(room, 0) > self.published.get(room, 0):
                async with self._lock(room):
                    await self._catch_up(room, self._wanted[room])
        except Exception:
            log.exception("live fan-out of room %r failed; the next notification retries", room)
        finally:
            self._pumps.pop(room, None)

    async def _catch_up(self, room: str, upto: int) -> None:
        """Publish the room's stored rows after its last published position (every one
        committed so far, at least through ``upto``); hold the room's lock."""
        if not self._watched(room):
            self.published[room] = max(self.published.get(room, 0), upto)
            return
        while True:
            last = self.published.get(room, 0)
            rows: list[Item] = [*await self.store.after(room, last, PAGE)]
            rows += await self.store.corrections_after(room, last, PAGE)
            page = sorted(rows, key=lambda i: i.position)[:PAGE]
            for item in page:
                self.hub.publish(item)
            if page:
                self.published[room] = page[-1].position
            if len(page) < PAGE:
                break
        # A position without a row (a room that keeps no transcript) is passed too.
        self.published[room] = max(self.published.get(room, 0), upto)

    def _watched(self, room: str) -> bool:
        return bool(self.hub.subscribers(room) or self.hub.subscribers(None))

    def _lock(self, room: str) -> asyncio.Lock:
        return self._locks.setdefault(room, asyncio.Lock())

    # ---- the listener connection ------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._listen(), name="live bus")
        listening = asyncio.ensure_future(self._listening.wait())
        await asyncio.wait([self._task, listening], timeout=30, return_when=asyncio.FIRST_COMPLETED)
        listening.cancel()

    async def _listen(self) -> None:
        """Listen; after losing the connection, listen again (with backoff) and resync."""
        while True:
            try:
                await self._listen_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.reconnects += 1
                log.warning(
                    "live bus: %s; listening again in %.1f s", exc or type(exc), self._backoff
                )
                await asyncio.sleep(self._backoff)
                self._backoff = min(RECONNECT_MAX, self._backoff * 2)

    async def _listen_once(self) -> None:
        conn = await asyncpg.connect(
            self.db.url, timeout=10, server_settings={"application_name": APPLICATION_NAME}
        )
        lost = asyncio.Event()
        try:
            conn.add_termination_listener(lambda _c: lost.set())
            await conn.add_listener(CHANNEL, self._on_notify)
            await self._resync()
            self._listening.set()
            self._backoff = RECONNECT_FIRST
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), PING_SECONDS)
                if not lost.is_set():
                    await conn.fetchval("SELECT 1", timeout=PING_SECONDS)
            raise ConnectionError("the listener connection closed")
        finally:
            if not conn.is_closed():
                conn.terminate()

    async def _resync(self) -> None:
        """Once listening (again): catch up every room with live readers here; the others
        start from the room's last number (notifications missed while not listening)."""
        async with self.db.read() as conn:
            found = await conn.execute(select(caption_counters.c.room, caption_counters.c.last_seq))
            counters = {str(row[0]): int(row[1]) for row in found}
        for room, last in counters.items():
            async with self._lock(room):
                if self._watched(room):
                    await self._catch_up(room, last)
                else:
                    self.published[room] = max(self.published.get(room, 0), last)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            data = json.loads(payload)
            room, pos = str(data["room"]), int(data["pos"])
        except (ValueError, KeyError, TypeError):
            log.warning("live bus: a notification that is not {room, pos}: %r", payload[:200])
            return
        self._notified(room, pos)

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._pumps.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def live_bus(hub: FanOut[Item], db: Database, store: CaptionStore) -> LiveBus:
    """The bus the database URL calls for: LISTEN/NOTIFY on PostgreSQL, else in-process."""
    if db.dialect == "postgresql":
        return PostgresBus(hub, db, store)
    return InProcessBus(hub)
