"""The database layer: Alembic migrations on both backends, transactions, and SQLite files
made by the hand-written migration runner that Alembic replaced (brought forward, data
kept)."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, func, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError

from orchestrator import schema
from orchestrator.captions.store import CaptionStore, Duplicate
from orchestrator.db import Database, alembic_config
from orchestrator.migrations.legacy import migrations, statements
from plenary.events import CaptionEvent
from plenary.settings import load_settings


def _differences(conn: Connection) -> list[object]:
    context = MigrationContext.configure(conn)
    return list(compare_metadata(context, schema.metadata))


def _legacy_differences(conn: Connection) -> list[object]:
    """``_differences`` less what only the former hand-written DDL shows, and means the
    same: a text primary key of a rowid table that SQLite lets be NULL (never is), and the
    UNIQUE columns without a constraint name (sqlite_autoindex_…)."""
    found = []
    for diff in _differences(conn):
        if isinstance(diff, list) and all(d[0] == "modify_nullable" for d in diff):
            table = schema.metadata.tables[diff[0][2]]
            if all(table.c[d[3]].primary_key for d in diff):
                continue
        if isinstance(diff, tuple) and diff[0] == "add_constraint":
            columns = tuple(c.name for c in diff[1].columns)
            unnamed = inspect(conn).get_unique_constraints(diff[1].table.name)
            if any(tuple(u["column_names"]) == columns for u in unnamed):
                continue
        found.append(diff)
    return found


def _head() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


async def _version(db: Database) -> list[str]:
    async with db.read() as conn:
        return list((await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars())


async def test_open_migrates_to_head_once(database_url: str) -> None:
    db = await Database.open(database_url)
    assert await _version(db) == [_head()]
    async with db.read() as conn:
        assert await conn.run_sync(_differences) == []  # the tables equal orchestrator.schema
    async with db.write() as conn:
        await conn.execute(insert(schema.kv).values(key="k", value="v"))
    await db.close()
    db = await Database.open(database_url)  # again: nothing re-applied, the data kept
    assert await _version(db) == [_head()]
    async with db.read() as conn:
        assert (await conn.execute(select(schema.kv.c.value))).scalar_one() == "v"
    await db.close()


async def test_a_failed_write_rolls_back(database_url: str) -> None:
    db = await Database.open(database_url)
    with pytest.raises(IntegrityError):
        async with db.write() as conn:
            await conn.execute(insert(schema.kv).values(key="a", value="1"))
            await conn.execute(insert(schema.kv).values(key="a", value="2"))  # key clash
    async with db.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(schema.kv))).scalar() == 0
    await db.close()


def _old_runner(path: Path, up_to: int) -> None:
    """What the hand-written runner left: the SQL files up to ``up_to``, each recorded."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " number INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    conn.execute("BEGIN IMMEDIATE")
    for number, name, sql in migrations():
        if number > up_to:
            break
        for statement in statements(sql):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations VALUES (?, ?, datetime('now'))", (number, name))
    conn.execute("COMMIT")
    conn.close()


def _old_rows(path: Path) -> None:
    """A room with a session of two captions, as the former code wrote them."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        "INSERT INTO rooms VALUES ('hall', 'Hall', '{\"slug\": \"hall\"}',"
        " '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')"
    )
    conn.execute("INSERT INTO kv VALUES ('cookie_secret', 'old-key')")
    conn.execute(
        "INSERT INTO caption_sessions (pid, room, started_at_ms, last_at_ms)"
        " VALUES ('pl-oldsess', 'hall', 1000, 3000)"
    )
    for seq, at in ((1, 2000), (2, 3000)):
        conn.execute(
            "INSERT INTO caption_counters VALUES ('hall', 1) ON CONFLICT (room)"
            " DO UPDATE SET last_seq = last_seq + 1"
        )
        conn.execute(
            "INSERT INTO caption_events (room, seq, session_id, at_ms, duration_ms, speaker,"
            " language, text, message_id) VALUES ('hall', ?, 1, ?, 900, 'Ann', 'en', ?, ?)",
            (seq, at, f"caption {seq}", f"m{seq}"),
        )
        conn.execute("INSERT INTO caption_event_ids VALUES (?, 'hall', ?)", (f"ev{seq}", seq))
    conn.execute("COMMIT")
    conn.close()


@pytest.mark.parametrize("up_to", [500, 302])
async def test_a_file_of_the_former_runner_is_brought_forward(tmp_path: Path, up_to: int) -> None:
    path = tmp_path / "old.sqlite3"
    _old_runner(path, up_to)
    _old_rows(path)
    db = await Database.open(path)
    assert await _version(db) == [_head()]
    async with db.read() as conn:
        tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert "schema_migrations" not in tables and "caption_policies" not in tables
        assert await conn.run_sync(_legacy_differences) == []
        captions = (
            await conn.execute(
                select(schema.caption_events.c.seq, schema.caption_events.c.text,
                       schema.caption_events.c.revision).order_by(schema.caption_events.c.seq)
            )
        ).all()  # fmt: skip
        assert [tuple(row) for row in captions] == [(1, "caption 1", 0), (2, "caption 2", 0)]
        counter = select(schema.caption_counters.c.last_seq)
        assert (await conn.execute(counter)).scalar_one() == 2
        assert (await conn.execute(select(schema.rooms.c.title))).scalar_one() == "Hall"
        assert (await conn.execute(select(schema.kv.c.value))).scalar_one() == "old-key"
    # The store goes on where the former code stopped: its transcript, its numbers.
    store = CaptionStore(db, load_settings().captions)
    old = await store.session("pl-oldsess")
    assert old is not None and old.events == 2
    assert [c.text for c in await store.transcript(old)] == ["caption 1", "caption 2"]
    event = CaptionEvent(room="hall", speaker="Ann", language="en", text="new", is_final=True,
                         start=0.0, end=1.0, message_id="m3", event_id="ev3")  # fmt: skip
    assert (await store.append("hall", event, 1_800_000_000_000, keep=True)).seq == 3
    again = await store.append("hall", dataclasses.replace(event, event_id="ev1"), 1, keep=True)
    assert isinstance(again, Duplicate) and again.seq == 1  # its event ids were kept too
    await db.close()
    db = await Database.open(path)  # opened again: stays at head, nothing re-applied
    assert await _version(db) == [_head()]
    await db.close()
