"""Opening a live stream cheaply, so thousands of readers can arrive at once.

When a node dies, every reader it held reconnects to the survivors within a second or
two, each with its Last-Event-ID. Each opening used to make about six database reads
(the room for the access check, the caption policy twice, the backlog in two queries),
and 5,000 of them queued for the node's 30 pooled connections past the pool's timeout
(HTTP 500). Here:

- **Rooms are cached per node for ``ROOM_TTL_S`` seconds** (the access check and the
  caption policy both come from the room). A room created, changed or deleted through
  this node drops the whole cache at once (SQLAlchemy events: a statement writing the
  ``rooms`` table, then its connection back in the pool after the commit; rooms read
  while such a write is under way are not kept). A change made through *another* node
  (or ``plenary rooms`` on the database) applies here at most ``ROOM_TTL_S`` seconds
  after its commit: the staleness bound of a new stream's access decision (a room made
  restricted, a reader taken out of its caption readers, a room deleted). Concurrent
  misses of one room make one read. Read tokens, login sessions and LDAP groups are not
  cached: a revoked read token is refused at once.
- **The backlog is one read**, shared: captions and corrections after the reader's
  position on one pooled connection. Readers of a room gather while the room's previous
  read is under way and then share the next one, from the lowest position among them;
  a reader never shares a read that began before it asked (it had subscribed by then, so
  a caption published meanwhile is either in the read or in its subscription).
- **At most ``OPENING_SLOTS`` openings (or shared reads) at a time** use the database,
  so a reconnect burst never takes the connections captioners need to store captions.
  An opening waits at most ``OPENING_WAIT_S`` for a slot; that, or a pool with no free
  connection within ``orchestrator.db.POOL_TIMEOUT_S``, is answered 503 with
  ``Retry-After`` (``Busy``), which SSE and captions.txt clients retry; never a 500.

Streams already open are not re-checked: a reader refused now keeps a stream opened
before, until it ends (as before this cache).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Delete, Insert, Update, event
from sqlalchemy import exc as sa_exc

from orchestrator.captions import store_rows as rows
from orchestrator.captions.model import Item
from orchestrator.captions.store_rows import events, fixes
from orchestrator.db import Database
from orchestrator.problems import problem
from orchestrator.rooms.model import Room
from orchestrator.rooms.repository import RoomNotFound, RoomRepository
from orchestrator.schema import rooms

ROOM_TTL_S = 3.0  # the staleness bound for changes made on another node (docs/scaling.md)
OPENING_SLOTS = 8  # of the pool's 30 connections (orchestrator.db), for stream openings
OPENING_WAIT_S = 5.0  # then 503 + Retry-After
RETRY_AFTER_S = 2
SPAN = 2000  # readers resuming within this many positions share a backlog read
_CHANGED = "plenary_rooms_changed"


class Busy(Exception):
    """No database connection for this opening within the bounded wait."""


def busy_response(what: str) -> Exception:
    """The 503 a reader gets when the node is too busy to open its stream now."""
    return problem(
        503,
        f"this node is opening many {what} at once; retry in {RETRY_AFTER_S} s",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


@dataclass
class _Batch:
    """Readers of one room waiting for the same backlog read, and its result."""

    afters: list[int]
    result: asyncio.Future[list[Item]]


class Opening:
    """One node's cache of rooms, shared backlog reads and opening slots (one per database)."""

    def __init__(self, db: Database, ttl: float = ROOM_TTL_S, slots: int = OPENING_SLOTS,
                 wait: float = OPENING_WAIT_S) -> None:  # fmt: skip
        self.db = db
        self.ttl = ttl
        self.wait = wait
        self.generation = 0  # bumped by every write to the rooms table on this node
        self.writing = 0  # transactions on this node that wrote rooms and are not over
        self._slots = asyncio.Semaphore(slots)
        self._rooms: dict[str, tuple[float, int, Room | None]] = {}
        self._loading: dict[tuple[str, int], asyncio.Task[Room | None]] = {}
        self._pending: dict[tuple[str, int, int], _Batch] = {}  # gathering readers
        self._running: dict[tuple[str, int, int], asyncio.Future[list[Item]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        _watch_rooms(db, self)

    def invalidate(self) -> None:
        self.generation += 1
        self._rooms.clear()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """One of the opening slots for the block; ``Busy`` when none frees up within
        ``wait`` s or the pool has no connection in time."""
        try:
            async with asyncio.timeout(self.wait):
                await self._slots.acquire()
        except TimeoutError:
            raise Busy from None
        try:
            yield
        except sa_exc.TimeoutError:  # the pool's own bounded wait (orchestrator.db)
            raise Busy from None
        finally:
            self._slots.release()

    async def room(self, slug: str) -> Room | None:
        """Room ``slug`` as read at most ``ttl`` s ago (None: no such room)."""
        now = time.monotonic()
        cached = self._rooms.get(slug)
        if cached is not None and cached[1] == self.generation and now - cached[0] < self.ttl:
            return cached[2]
        # One read for every reader who asks meanwhile, unless the room changed through
        # this node since it began (then it may hold the old room).
        key = (slug, self.generation)
        loading = self._loading.get(key)
        if loading is None:
            loading = self._loading[key] = asyncio.create_task(self._load(slug))
            loading.add_done_callback(lambda _t: self._loading.pop(key, None))
        # Shielded: a reader who leaves does not cancel the others' read.
        return await asyncio.shield(loading)

    async def _load(self, slug: str) -> Room | None:
        generation, read_at, writing = self.generation, time.monotonic(), self.writing
        try:
            room: Room | None = await RoomRepository(self.db).get(slug)
        except RoomNotFound:
            room = None
        if not writing and generation == self.generation:  # no write overlapped the read
            self._rooms[slug] = (read_at, generation, room)
        return room

    async def backlog(self, room: str, after: int, limit: int) -> list[Item]:
        """Stored captions and corrections after ``after``, in stream order, read after
        this call began (so nothing published since the caller subscribed is missed)."""
        key = (room, after // SPAN, limit)
        batch = self._pending.get(key)
        if batch is None:
            loop = asyncio.get_running_loop()
            batch = self._pending[key] = _Batch([], loop.create_future())
            task = asyncio.create_task(self._read_batch(key, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        batch.afters.append(after)
        items = await asyncio.shield(batch.result)
        return [i for i in items if i.position > after][:limit]

    async def _read_batch(self, key: tuple[str, int, int], batch: _Batch) -> None:
        """One read for every reader of the room that asked before it began: it waits
        for the room's read under way (readers gather meanwhile), then reads from the
        lowest position asked. Stream positions are distinct integers (captions and
        corrections share the room's numbers), so ``limit`` + (highest - lowest) items
        hold the first ``limit`` after each reader's position."""
        room, _bucket, limit = key
        try:
            try:
                previous = self._running.get(key)
                if previous is not None:
                    await asyncio.wait([previous])
                else:
                    await asyncio.sleep(0)  # those arriving in the same turn join
            finally:
                del self._pending[key]  # no one joins a read that has begun
            self._running[key] = batch.result
            low, high = min(batch.afters), max(batch.afters)
            async with self.slot():
                items = await self._read_backlog(room, low, limit + high - low)
            batch.result.set_result(items)
        except BaseException as exc:
            if not batch.result.done():
                batch.result.set_exception(exc)
                batch.result.exception()  # retrieved: every reader of the batch gets it
            if not isinstance(exc, Exception):
                raise
        finally:
            if self._running.get(key) is batch.result:
                del self._running[key]

    async def _read_backlog(self, room: str, after: int, limit: int) -> list[Item]:
        # CaptionStore.after + corrections_after, but on one pooled connection.
        captions = (
            rows.CAPTIONS.where(events.c.room == room, events.c.seq > after)
            .order_by(events.c.seq)
            .limit(limit)
        )
        corrections = (
            rows.CORRECTIONS.where(fixes.c.room == room, fixes.c.pos > after)
            .order_by(fixes.c.pos)
            .limit(limit)
        )
        async with self.db.read() as conn:
            items: list[Item] = [rows.caption(r) for r in await conn.execute(captions)]
            items += [rows.correction(r) for r in await conn.execute(corrections)]
        return sorted(items, key=lambda i: i.position)[:limit]


_openings: weakref.WeakKeyDictionary[Database, Opening] = weakref.WeakKeyDictionary()


def opening_for(db: Database) -> Opening:
    """The node's ``Opening`` for ``db`` (made on first use)."""
    found = _openings.get(db)
    if found is None:
        found = _openings[db] = Opening(db)
    return found


def _watch_rooms(db: Database, opening: Opening) -> None:
    """Drop ``opening``'s rooms when a statement on this engine writes the rooms table,
    and again when its connection is back in the pool (committed or rolled back); rooms
    read while such a write is under way are not kept (they may be the old rows)."""
    target = weakref.ref(opening)

    def changed(start: bool) -> None:
        found = target()
        if found is not None:
            found.writing += 1 if start else -1
            found.invalidate()

    def after_execute(conn: Any, clause: Any, *_args: Any) -> None:
        if isinstance(clause, Insert | Update | Delete) and clause.table is rooms:
            if not conn.info.get(_CHANGED):
                conn.info[_CHANGED] = True
                changed(start=True)
            else:
                changed(start=False)
                changed(start=True)

    def checkin(_dbapi_connection: Any, record: Any) -> None:
        if record is not None and record.info.pop(_CHANGED, False):
            changed(start=False)

    sync = db.engine.sync_engine
    event.listen(sync, "after_execute", after_execute)
    event.listen(sync, "checkin", checkin)
