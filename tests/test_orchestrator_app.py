"""The orchestrator's skeleton: app factory, security headers (the database: test_db_*.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.app import create_app
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
