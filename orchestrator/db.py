"""The orchestrator's database: SQLite (embedded default) or PostgreSQL, one API.

SQLAlchemy 2 Core, async (``sqlite+aiosqlite``, ``postgresql+asyncpg``). Repositories
take a ``Database`` and run Core statements (``orchestrator/schema.py``) on the
connection that ``read()`` or ``write()`` hands them:

    db = await Database.open("postgresql://plenary@127.0.0.1:5432/plenary")  # or a Path
    async with db.read() as conn:
        slugs = (await conn.execute(select(rooms.c.slug))).scalars().all()
    async with db.write() as conn:  # one transaction: committed on exit, rolled back on error
        await conn.execute(delete(rooms).where(rooms.c.slug == "x"))

``open`` brings the schema to the newest Alembic revision (``orchestrator/alembic``);
several nodes starting at once on one PostgreSQL take turns (an advisory lock). A SQLite
file made by the hand-written runner this replaced (its ``schema_migrations`` table) is
first brought to that runner's last file, then stamped at the baseline revision, which
equals it, and upgraded like any other.

SQLite: one writer at a time per process (an ``asyncio.Lock``, then ``BEGIN IMMEDIATE``,
so a write never fails half-way on a lock another connection took first); WAL, foreign
keys and a busy timeout on every connection; text that is not valid UTF-8 (rows written
by older versions) reads with U+FFFD instead of failing. PostgreSQL: writes run
concurrently; what must be serialized per room takes a row lock (captions.store).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Table, event, inspect, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from orchestrator.migrations import legacy
from plenary.settings.orchestrator import OrchestratorSettings

ALEMBIC = Path(__file__).parent / "alembic"
log = logging.getLogger(__name__)
# Alembic says "Context impl SQLiteImpl" and more at INFO on every start, migrated or
# not; Plenary logs one line of its own when the schema actually changed.
logging.getLogger("alembic").setLevel(logging.WARNING)
BASELINE = "0001_baseline"
MIGRATION_LOCK = 0x504C454E  # pg_advisory_xact_lock key while migrating ("PLEN")
BUSY_TIMEOUT_MS = 5000
# PostgreSQL: 10 pooled connections, 20 more under load. A statement that finds none free
# waits at most POOL_TIMEOUT_S (sqlalchemy.exc.TimeoutError): stream openings answer it
# 503 + Retry-After and take at most a few of them at a time (captions/opening.py).
POOL_SIZE, POOL_OVERFLOW, POOL_TIMEOUT_S = 10, 20, 10.0


def engine_url(url_or_path: str | Path) -> tuple[str, Literal["sqlite", "postgresql"]]:
    """The SQLAlchemy async URL and dialect of a setting: a path, sqlite:///PATH or
    postgresql://…"""
    if isinstance(url_or_path, Path) or "://" not in url_or_path:
        path = Path(url_or_path)
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite+aiosqlite:///{path}", "sqlite"
    url = make_url(url_or_path)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        return url.set(drivername="sqlite+aiosqlite").render_as_string(False), "sqlite"
    if url.get_backend_name() == "postgresql":
        return url.set(drivername="postgresql+asyncpg").render_as_string(False), "postgresql"
    raise ValueError(f"unsupported database URL scheme {url.drivername!r}")


class Database:
    """One engine; ``read()`` and ``write()`` lend a connection (see the module doc)."""

    def __init__(self, engine: AsyncEngine, dialect: Literal["sqlite", "postgresql"]) -> None:
        self.engine = engine
        self.dialect = dialect
        self._write_lock = asyncio.Lock()

    @property
    def url(self) -> str:
        """The database's URL without the driver (``postgresql://…``, ``sqlite:///…``),
        password included: for drivers that connect on their own (LISTEN). Never log it."""
        url = self.engine.url
        return url.set(drivername=url.get_backend_name()).render_as_string(False)

    def __repr__(self) -> str:
        return f"Database({self.engine.url.render_as_string(True)})"

    @classmethod
    async def open(cls, url_or_path: str | Path) -> Database:
        url, dialect = engine_url(url_or_path)
        if dialect == "sqlite":
            # In memory, every connection would be a database of its own: share one.
            memory = make_url(url).database in (None, "", ":memory:")
            engine = create_async_engine(url, poolclass=StaticPool if memory else None)
            _sqlite_events(engine)
        else:
            # A connection broken by a server restart is dropped from the pool on its
            # first error (no ping per checkout: every caption would pay a round trip).
            engine = create_async_engine(
                url, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW, pool_timeout=POOL_TIMEOUT_S
            )
        db = cls(engine, dialect)
        try:
            async with db.write() as conn:
                await conn.run_sync(_migrate)
        except BaseException:
            await engine.dispose()
            raise
        return db

    def read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection for reading; its transaction is rolled back when the block ends."""
        return self._read()

    def write(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection in one transaction: committed when the block ends, rolled back if
        it raises."""
        return self._write()

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        if self.dialect == "sqlite":
            async with self._write_lock, self.engine.connect() as conn:
                await conn.execution_options(plenary_write=True)
                async with conn.begin():
                    yield conn
        else:
            async with self.engine.begin() as conn:
                yield conn

    async def close(self) -> None:
        await self.engine.dispose()


def upsert(db: Database | AsyncConnection | Connection, table: Table) -> Any:
    """``INSERT`` with ``.on_conflict_do_nothing()`` / ``.on_conflict_do_update()`` for the
    database's dialect (both take the same arguments)."""
    name = db.dialect if isinstance(db, Database) else db.dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


# ---- SQLite connections ---------------------------------------------------------------


def _lenient_text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _sqlite_events(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Transactions are begun by on_begin below, not by the driver's guesswork.
        dbapi_connection.isolation_level = None
        # Older versions could store invalid UTF-8; show it as U+FFFD, never fail.
        dbapi_connection._connection.text_factory = _lenient_text
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("plenary_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


# ---- migrations -----------------------------------------------------------------------


def alembic_config(conn: Connection | None = None) -> Config:
    """Alembic's configuration for orchestrator/alembic; with ``conn``, env.py migrates
    on that connection (inside its transaction)."""
    config = Config()
    config.set_main_option("script_location", str(ALEMBIC))
    if conn is not None:
        config.attributes["connection"] = conn
    return config


def _migrate(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    tables = set(inspect(conn).get_table_names())
    config = alembic_config(conn)
    if "schema_migrations" in tables and "alembic_version" not in tables:
        legacy.bring_forward(conn)
        command.stamp(config, BASELINE)
        conn.execute(text("DROP TABLE schema_migrations"))
    before = MigrationContext.configure(conn).get_current_revision()
    command.upgrade(config, "head")
    after = MigrationContext.configure(conn).get_current_revision()
    if after != before:
        log.info("database schema migrated from %s to %s", before or "nothing", after)


def configured(settings: OrchestratorSettings) -> str | Path:
    """Where the settings put the database: ``database_url``, else the ``database`` file."""
    return settings.database_url or settings.database
