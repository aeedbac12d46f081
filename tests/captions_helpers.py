"""Helpers for caption tests: rooms made through the admin API, the way an organizer does."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.harness.rooms_helpers import AUTH, room_json

DB_ENV = "PLENARY_ORCHESTRATOR__DATABASE"
DB_URL_ENV = "PLENARY_ORCHESTRATOR__DATABASE_URL"  # a URL (sqlite:///…, postgresql://…)


async def make_room(client: Any, slug: str, **over: Any) -> dict[str, Any]:
    """Create room ``slug`` over ``POST /api/v1/rooms`` (public: its policy admits anyone,
    unless ``policy`` says otherwise); its JSON."""
    response = await client.post("/api/v1/rooms", json=room_json(slug, **over), headers=AUTH)
    assert response.status == 201, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def patch_room(client: Any, slug: str, **fields: Any) -> dict[str, Any]:
    response = await client.patch(f"/api/v1/rooms/{slug}", json=fields, headers=AUTH)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


def cli_rooms(
    database: Path | str, *slugs: str, retention_days: int | None = 90, policy: str = ""
) -> None:
    """Create rooms the way an operator does, with ``plenary rooms create`` on the
    database the app will open (in a thread of its own: the CLI runs its own loop);
    public unless ``policy`` (JSON) says otherwise."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(_cli_rooms, database, slugs, retention_days, policy).result()


def _cli_rooms(
    database: Path | str, slugs: tuple[str, ...], retention_days: int | None, policy: str
) -> None:
    from plenary.compose.cli import main

    env = DB_URL_ENV if "://" in str(database) else DB_ENV
    old = os.environ.get(env)
    os.environ[env] = str(database)
    try:
        for slug in slugs:
            argv = ["rooms", "create", slug, "--title", slug, "--start", "2030-03-01T10:00",
                    "--end", "2030-03-01T11:00"]  # fmt: skip
            argv += ["--policy", policy] if policy else ["--anyone"]
            if retention_days is not None:
                argv += ["--retention-days", str(retention_days)]
            assert main(argv) == 0, slug
    finally:
        if old is None:
            del os.environ[env]
        else:
            os.environ[env] = old
