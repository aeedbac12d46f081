"""Login limits behind one interface: in memory for one node, in the database for many.

``LoginLimits`` is what the login view asks (orchestrator/web/auth.py). The limits and
their meaning are those of orchestrator/access/ratelimit.py (per account, per
(address, account), a growing delay per address):

- ``MemoryLoginLimits`` keeps them in this process (``LoginLimiter``): the embedded
  SQLite default, one orchestrator;
- ``DatabaseLoginLimits`` keeps them in the ``login_failures`` and ``login_delays``
  tables, so failures on one orchestrator node count on every node of one PostgreSQL
  database. Every change is one atomic statement (an insert, a delete, an upsert of
  the address's run), never a read-modify-write in Python.

    limits = login_limits(settings.orchestrator.login, db)
    wait = await limits.wait(username, address)
    ... await limits.failed(username, address) / await limits.succeeded(username, address)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from sqlalchemy import and_, case, delete, insert, or_, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.access.ratelimit import LoginLimiter, Wait, account_key, backoff_delay
from orchestrator.db import Database, upsert
from orchestrator.schema import login_delays, login_failures
from plenary.settings.orchestrator import LoginSettings

log = logging.getLogger(__name__)


class LoginLimits(Protocol):
    async def wait(self, account: str, address: str, *, per_address: bool = True) -> Wait | None:
        """The longest limit in force for ``account`` from ``address``; None: try now.
        ``per_address=False`` asks about the account's limits only."""

    async def failed(self, account: str, address: str) -> None:
        """Count a wrong password."""

    async def succeeded(self, account: str, address: str) -> None:
        """Forget the account's failures (not the address's)."""


def login_limits(settings: LoginSettings, db: Database) -> LoginLimits:
    """In the database when it is PostgreSQL (nodes may share it), else in memory."""
    if db.dialect == "postgresql":
        return DatabaseLoginLimits(db, settings)
    return MemoryLoginLimits(
        LoginLimiter(
            per_account=settings.per_account,
            per_address_account=settings.per_address_account,
            per_address=settings.per_address,
            window=settings.window,
            address_delay=settings.address_delay,
            address_delay_max=settings.address_delay_max,
        )
    )


class MemoryLoginLimits:
    """``LoginLimiter`` (pure, synchronous) behind the ``LoginLimits`` interface."""

    def __init__(self, limiter: LoginLimiter) -> None:
        self.limiter = limiter

    async def wait(self, account: str, address: str, *, per_address: bool = True) -> Wait | None:
        return self.limiter.wait(account, address, per_address=per_address)

    async def failed(self, account: str, address: str) -> None:
        self.limiter.failed(account, address)

    async def succeeded(self, account: str, address: str) -> None:
        self.limiter.succeeded(account, address)


ACCOUNT, PAIR = "account", "address_account"  # login_failures.scope


class DatabaseLoginLimits:
    """The limits of ``LoginLimiter`` kept in the database, times in epoch ms.

    ``login_failures`` holds one row per failure and scope (the account, the address and
    account pair) for ``window`` seconds: a key is refused while ``limit`` of its rows
    are younger than the window, until the oldest of them ages out. ``login_delays``
    holds each address's run of failures (count, last), reset by ``window`` seconds of
    quiet, from which its delay doubles. Rows older than the window are deleted after
    each failure, so the tables hold only what can still count.

    Counting a failure takes one row lock (the address's run, an upsert); the failure
    rows are inserts. A question and the failure that follows are not one transaction:
    attempts racing on several nodes may each pass before any is counted, as they
    may within one node, so a limit can be passed by the attempts in flight at once.
    """

    def __init__(
        self, db: Database, settings: LoginSettings, clock: Callable[[], float] = time.time
    ) -> None:
        self.db = db
        self.s = settings
        self._clock = clock
        self._window_ms = round(settings.window * 1000)

    def _now_ms(self) -> int:
        return round(self._clock() * 1000)

    async def wait(self, account: str, address: str, *, per_address: bool = True) -> Wait | None:
        now = self._now_ms()
        key = account_key(account)
        async with self.db.read() as conn:
            waits = [
                Wait(await self._window_wait(conn, ACCOUNT, key, self.s.per_account, now),
                     "account"),
                Wait(await self._window_wait(conn, PAIR, f"{address} {key}",
                                             self.s.per_address_account, now),
                     "address_account"),
            ]  # fmt: skip
            if per_address:
                waits.append(Wait(await self._address_wait(conn, address, now), "address"))
        longest = max(waits, key=lambda w: w.seconds)
        return longest if longest.seconds > 0 else None

    async def _window_wait(
        self, conn: AsyncConnection, scope: str, key: str, limit: int, now: int
    ) -> float:
        f = login_failures.c
        # the limit-th newest failure still in the window: the window opens again when
        # it ages out (fewer than limit: none is found, no wait)
        query = (
            select(f.at_ms)
            .where(f.scope == scope, f.key == key, f.at_ms > now - self._window_ms)
            .order_by(f.at_ms.desc())
            .offset(limit - 1)
            .limit(1)
        )
        at = await conn.scalar(query)
        return 0.0 if at is None else max(0.0, (at + self._window_ms - now) / 1000)

    async def _address_wait(self, conn: AsyncConnection, address: str, now: int) -> float:
        d = login_delays.c
        query = select(d.failures, d.last_at_ms).where(d.address == address)
        row = (await conn.execute(query)).first()
        if row is None:
            return 0.0
        failures, last_ms = int(row.failures), int(row.last_at_ms)
        if now - last_ms >= self._window_ms:  # the run ended: quiet for the window
            return 0.0
        delay = backoff_delay(failures, self.s.per_address, self.s.address_delay,
                              self.s.address_delay_max)  # fmt: skip
        return max(0.0, (last_ms - now) / 1000 + delay)

    async def failed(self, account: str, address: str) -> None:
        now = self._now_ms()
        key = account_key(account)
        quiet_since = now - self._window_ms
        d = login_delays.c
        run = upsert(self.db, login_delays).values(address=address, failures=1, last_at_ms=now)
        run = run.on_conflict_do_update(
            index_elements=[d.address],
            set_={
                # a run ends after window seconds without a failure
                "failures": case((d.last_at_ms <= quiet_since, 1), else_=d.failures + 1),
                "last_at_ms": run.excluded.last_at_ms,
            },
        )
        async with self.db.write() as conn:
            await conn.execute(
                insert(login_failures),
                [{"scope": ACCOUNT, "key": key, "at_ms": now},
                 {"scope": PAIR, "key": f"{address} {key}", "at_ms": now}],
            )  # fmt: skip
            await conn.execute(run)
        await self._prune(quiet_since)

    async def _prune(self, before_ms: int) -> None:
        """Delete what can no longer count, in a transaction of its own: two nodes pruning
        at once could deadlock on each other's rows, and PostgreSQL would then abort one;
        only this housekeeping fails then (the next failure prunes), never the count."""
        try:
            async with self.db.write() as conn:
                await conn.execute(
                    delete(login_failures).where(login_failures.c.at_ms <= before_ms)
                )
                await conn.execute(
                    delete(login_delays).where(login_delays.c.last_at_ms <= before_ms)
                )
        except DBAPIError as exc:
            log.info("login limits: pruning old rows failed (done at the next failure): %s", exc)

    async def succeeded(self, account: str, address: str) -> None:
        key = account_key(account)
        f = login_failures.c
        async with self.db.write() as conn:
            await conn.execute(
                delete(login_failures).where(
                    or_(
                        and_(f.scope == ACCOUNT, f.key == key),
                        and_(f.scope == PAIR, f.key == f"{address} {key}"),
                    )
                )
            )
