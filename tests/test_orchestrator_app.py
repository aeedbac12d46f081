"""The orchestrator's skeleton: app factory, database migrations, security headers."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from orchestrator.app import create_app
from orchestrator.db import Database, migrations
from plenary.settings import Settings, load_settings


@pytest.fixture
def app_settings(tmp_path: Path) -> Settings:
    return load_settings(orchestrator={"database": tmp_path / "plenary.sqlite3"})


async def test_index_and_health(aiohttp_client: Any, app_settings: Settings) -> None:
    client = await aiohttp_client(create_app(app_settings))
    page = await client.get("/")
    assert page.status == 200
    html = await page.text()
    assert '<html lang="en">' in html and 'href="#main"' in html
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert (await (await client.get("/healthz")).json()) == {"status": "ok"}
    css = await client.get("/static/plenary.css")
    assert css.status == 200


async def test_migrations_apply_once_and_in_order(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    db = await Database.open(path)
    numbers = await db.read(
        lambda c: [r[0] for r in c.execute("SELECT number FROM schema_migrations ORDER BY 1")]
    )
    assert numbers == [m[0] for m in migrations()]
    await db.close()
    db = await Database.open(path)  # again: nothing re-applied, no error
    count = await db.read(lambda c: c.execute("SELECT count(*) FROM schema_migrations").fetchone())
    assert count[0] == len(migrations())
    await db.close()


async def test_a_failed_write_rolls_back(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "db.sqlite3")

    def half_then_fail(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO kv VALUES ('a', '1')")
        c.execute("INSERT INTO kv VALUES ('a', '2')")  # primary key clash

    with pytest.raises(sqlite3.IntegrityError):
        await db.write(half_then_fail)
    rows = await db.read(lambda c: c.execute("SELECT * FROM kv").fetchall())
    assert rows == []
    await db.close()
