"""Leases: tasks that exactly one orchestrator node (or one IRC relay) runs at a time.

A lease is one row of ``leases`` (name, holder, expires_at_ms). Taking and renewing it
is one atomic statement: insert the row, or update it where it has run out or is
already the caller's, returning the holder; no row back means someone else holds it.
Times are the database's clock (``_db_now_ms``), so nodes whose clocks differ agree on
when a lease ran out. Works alike on SQLite and PostgreSQL (an ``INSERT … ON CONFLICT
DO UPDATE … WHERE … RETURNING``; the row lock, or SQLite's one writer, makes two
takers wait for each other, and the second sees the first's row).

    leases = Leases(db)
    got = await leases.acquire("retention", node_id(), ttl_ms=15_000)  # Claim
    if got.held: ...                      # renew the same way every ttl/3
    await leases.release("retention", holder)

``run_while_held`` guards a task: it runs only while this node holds the lease,
renewed every third of the lease time; when renewing fails for long enough that the
lease might run out, or another holder has it, the task is cancelled (before the
lease can run out) and the node waits to take the lease again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, cast, delete, literal_column, select
from sqlalchemy.exc import SQLAlchemyError

from orchestrator.db import Database, upsert
from orchestrator.schema import leases

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer to ``acquire``: whether the caller holds the lease now, who does, and
    until when (database clock, epoch ms)."""

    held: bool
    holder: str
    expires_at_ms: int
    now_ms: int  # the database's clock when it answered


def node_id() -> str:
    """A holder name unique to this process run: host, pid and a random tail (a
    restarted process is another holder, never mistaken for its predecessor)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _db_now_ms(db: Database) -> ColumnElement[Any]:
    """Now, epoch milliseconds, by the database's clock (the statement's start time on
    PostgreSQL, so both uses in one statement agree)."""
    if db.dialect == "postgresql":
        return cast(literal_column("extract(epoch from statement_timestamp()) * 1000"), BigInteger)
    return literal_column("CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)")


class Leases:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def acquire(self, name: str, holder: str, ttl_ms: int) -> Claim:
        """Take or renew ``name`` for ``ttl_ms`` from now, unless another holder has it
        and it has not run out."""
        now = _db_now_ms(self.db)
        stmt = upsert(self.db, leases).values(name=name, holder=holder, expires_at_ms=now + ttl_ms)
        stmt = stmt.on_conflict_do_update(
            index_elements=[leases.c.name],
            set_={"holder": stmt.excluded.holder, "expires_at_ms": stmt.excluded.expires_at_ms},
            where=(leases.c.expires_at_ms <= now) | (leases.c.holder == holder),
        ).returning(leases.c.holder, leases.c.expires_at_ms, now.label("now_ms"))
        async with self.db.write() as conn:
            row = (await conn.execute(stmt)).first()
            if row is not None:
                return Claim(True, row.holder, int(row.expires_at_ms), int(row.now_ms))
            query = select(leases.c.holder, leases.c.expires_at_ms, now.label("now_ms"))
            other = (await conn.execute(query.where(leases.c.name == name))).one()
        return Claim(False, other.holder, int(other.expires_at_ms), int(other.now_ms))

    async def release(self, name: str, holder: str) -> bool:
        """Give ``name`` up if ``holder`` has it; whether it did."""
        stmt = delete(leases).where(leases.c.name == name, leases.c.holder == holder)
        async with self.db.write() as conn:
            return bool((await conn.execute(stmt)).rowcount)


async def run_while_held(
    db: Database,
    name: str,
    work: Callable[[], Awaitable[None]],
    *,
    ttl: float,
    holder: str | None = None,
) -> None:
    """Run ``work()`` on this node only while it holds lease ``name`` (``ttl`` seconds,
    renewed every ttl/3), until cancelled. Losing the lease cancels ``work``; the node
    then tries to take it again every ttl/3. An exception out of ``work`` ends this too."""
    holder = holder or node_id()
    leases_ = Leases(db)
    loop = asyncio.get_running_loop()
    period = ttl / 3
    ttl_ms = int(ttl * 1000)

    async def claim() -> Claim | None:
        try:
            return await asyncio.wait_for(leases_.acquire(name, holder, ttl_ms), period)
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            log.warning("lease %s: cannot reach the database: %s", name, exc)
            return None

    try:
        while True:
            asked = loop.time()
            got = await claim()
            if got is None or not got.held:
                await asyncio.sleep(max(0.0, period - (loop.time() - asked)))
                continue
            log.info("lease %s: held by this node (%s)", name, holder)
            if await _guard(name, work, asked, ttl, claim):
                return
    finally:
        # Give the lease back for a prompt takeover, but never hang a stop on it: if the
        # database does not answer within a renewal period the lease just runs out.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(leases_.release(name, holder), period)


async def _guard(
    name: str,
    work: Callable[[], Awaitable[None]],
    asked: float,
    ttl: float,
    claim: Callable[[], Awaitable[Claim | None]],
) -> bool:
    """Run ``work`` while renewals succeed. True when it ended by itself; False (work
    cancelled) once the lease is lost or might run out before the next renewal."""
    loop = asyncio.get_running_loop()
    period = ttl / 3
    deadline = asked + ttl  # by our clock, no later than the database's expiry
    task = asyncio.ensure_future(work())
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=max(0.0, asked + period - loop.time()))
            if done:
                task.result()  # raises what ended it
                return True
            asked = loop.time()
            got2 = await claim()
            if got2 is not None and got2.held:
                deadline = asked + ttl
                continue
            if got2 is not None:
                log.warning("lease %s: taken by %s; stopping here", name, got2.holder)
                return False
            if loop.time() + period >= deadline:
                log.warning("lease %s: not renewed in time; stopping here", name)
                return False
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
