"""SQLite from asyncio: reads on a small thread pool, every write through one writer thread.

The event loop never blocks on the database and writes never race (datasette's
habit). Schema changes are numbered SQL files in ``orchestrator/migrations/``,
applied in order at start-up and recorded in ``schema_migrations``; each concern owns
its own range of numbers (0001-0099 core, 0100 rooms, 0200 access, 0300 captions).
Repositories take a ``Database``; a PostgreSQL implementation of the same two
methods can replace it later.

    db = await Database.open(Path("plenary.sqlite3"))
    rooms = await db.read(lambda c: c.execute("SELECT slug FROM rooms").fetchall())
    await db.write(lambda c: c.execute("DELETE FROM rooms WHERE slug = ?", ("x",)))
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

READERS = 4


class Database:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._readers = ThreadPoolExecutor(READERS, thread_name_prefix="db-read")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="db-write")

    @classmethod
    async def open(cls, path: Path) -> Database:
        db = cls(path)
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        await db.write(migrate)
        return db

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA busy_timeout = 5000")
            self._local.conn = conn
        return conn

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, lambda: fn(self._connection()))

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one transaction on the writer thread; rolled back if it raises."""

        def run() -> T:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, run)

    async def close(self) -> None:
        def close_local() -> None:
            conn = getattr(self._local, "conn", None)
            if conn is not None:
                conn.close()
                self._local.conn = None

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer, close_local)
        for _ in range(READERS):
            await loop.run_in_executor(self._readers, close_local)
        self._writer.shutdown()
        self._readers.shutdown()


def migrations() -> list[tuple[int, str, str]]:
    """(number, name, sql) of every file in orchestrator/migrations, in order."""
    found = []
    for entry in resources.files("orchestrator.migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply the migrations not yet recorded; returns their names."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " number INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    done = {row[0] for row in conn.execute("SELECT number FROM schema_migrations")}
    applied = []
    for number, name, sql in migrations():
        if number in done:
            continue
        for statement in _statements(sql):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations VALUES (?, ?, datetime('now'))", (number, name))
        applied.append(name)
    return applied


def _statements(sql: str) -> list[str]:
    # executescript() would commit our transaction; split on complete statements instead.
    out, buf = [], ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
