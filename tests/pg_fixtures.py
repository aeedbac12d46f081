"""PostgreSQL for the tests: one throwaway server per session (bench/harness/postgres.py).

Registered for every test module by ``pytest_plugins`` in tests/conftest.py.

- ``pg_server``: the session's PostgreSQL 15 on 127.0.0.1 (skipped, with the reason,
  only when PostgreSQL's binaries are not installed: ``make deps`` installs them).
- ``new_pg_url``: makes a new empty database on it, any number per test; its URL.
- ``pg_url``: one database for the whole session (share it with care).
- ``database_url``: the store suites run twice, on a new SQLite file and on a new
  PostgreSQL database (``@pytest.mark.parametrize`` not needed: the fixture is).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.harness.postgres import PostgresMissing, PostgresServer, postgres_server

_names = itertools.count(1)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    try:
        with postgres_server() as server:
            yield server
    except PostgresMissing as exc:
        pytest.skip(f"PostgreSQL is not installed here: {exc}")


@pytest.fixture(scope="session")
def new_pg_url(pg_server: PostgresServer) -> Callable[[], str]:
    """Call it for a new empty database's URL (migrated by ``Database.open``)."""

    def new() -> str:
        return pg_server.create_database(f"test_{next(_names)}")

    return new


@pytest.fixture(scope="session")
def pg_url(new_pg_url: Callable[[], str]) -> str:
    return new_pg_url()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new empty database of each backend in turn."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db.sqlite3'}"
    new: Callable[[], str] = request.getfixturevalue("new_pg_url")
    return new()
