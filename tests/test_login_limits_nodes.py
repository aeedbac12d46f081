"""Login limits that hold across orchestrator nodes sharing one PostgreSQL database.

- ``DatabaseLoginLimits`` (the tables of orchestrator/access/login_limits.py) answers
  exactly as the in-memory ``LoginLimiter`` does, on both backends, over a long random
  run of failures, successes and questions on one clock, and counts every one of
  many failures made at once on two nodes;
- two orchestrator apps (two aiohttp test servers) on one PostgreSQL database and a
  real slapd: failed logins on node A count on node B, per account, per (address,
  account) and in an address's delay, and a login on B clears what A counted.
"""

# ruff: noqa: RUF001  (a fullwidth look-alike name is part of the test)

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.harness.slapd import PASSWORDS, Slapd, run_slapd, slapd_binary
from orchestrator.access.login_limits import DatabaseLoginLimits, login_limits
from orchestrator.access.ratelimit import LoginLimiter, Wait
from orchestrator.app import create_app
from orchestrator.db import Database
from plenary.settings import Settings, load_settings
from plenary.settings.orchestrator import LoginSettings
from tests.test_login_limits import ATTACKER, limited, login
from tests.web_helpers import JITSI_SECRET


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    opened = await Database.open(database_url)
    yield opened
    await opened.close()


async def test_the_database_limits_answer_as_the_memory_limiter(db: Database) -> None:
    limits = LoginSettings(per_account=4, per_address_account=2, per_address=5, window=30,
                           address_delay=1, address_delay_max=8)  # fmt: skip
    clock = Clock()
    memory = LoginLimiter(**limits.model_dump(), clock=clock)
    stored = DatabaseLoginLimits(db, limits, clock=clock)
    rng = random.Random(16)
    accounts, addresses = ["alice", "ALICE", "bob", "carol"], ["192.0.2.1", "192.0.2.2", "::1"]
    limited_seen = set()
    for step in range(400):
        clock.now += rng.choice([0.0, 0.5, 1.0, 2.5, 7.0, 31.0])
        account, address = rng.choice(accounts), rng.choice(addresses)
        per_address = rng.random() < 0.8
        expected = memory.wait(account, address, per_address=per_address)
        got = await stored.wait(account, address, per_address=per_address)
        if expected is None:
            assert got is None, step
        else:
            assert got is not None, step
            assert got.limit == expected.limit, step
            assert got.seconds == pytest.approx(expected.seconds), step
            limited_seen.add(expected.limit)
        if rng.random() < 0.85:
            memory.failed(account, address)
            await stored.failed(account, address)
        else:
            memory.succeeded(account, address)
            await stored.succeeded(account, address)
    assert limited_seen == {"account", "address_account", "address"}  # the run covers all


async def test_failures_at_once_on_two_nodes_are_all_counted(database_url: str) -> None:
    limits = LoginSettings(per_account=1000, per_address_account=1000, per_address=40,
                           window=60, address_delay=1, address_delay_max=1000)  # fmt: skip
    clock = Clock()
    nodes = [await Database.open(database_url) for _ in range(2)]
    try:
        a, b = (DatabaseLoginLimits(node, limits, clock=clock) for node in nodes)
        await asyncio.gather(*((a if i % 2 else b).failed(f"user{i}", ATTACKER) for i in range(45)))
        # 45 failures, 40 free: the delay doubled 5 times (a lost update would be less)
        assert await b.wait("someone", ATTACKER) == Wait(32.0, "address")
        assert await a.wait("user3", ATTACKER, per_address=False) is None
    finally:
        for node in nodes:
            await node.close()


async def test_sqlite_keeps_limits_in_memory_postgresql_in_the_database(db: Database) -> None:
    chosen = login_limits(LoginSettings(), db)
    assert isinstance(chosen, DatabaseLoginLimits) == (db.dialect == "postgresql")


# -- two nodes, one PostgreSQL, a real slapd ---------------------------------------------


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    if slapd_binary() is None:
        pytest.skip("slapd is not installed")
    with run_slapd(tmp_path_factory.mktemp("slapd")) as server:
        yield server


def _settings(tmp_path: Path, slapd: Slapd, url: str, **login: Any) -> Settings:
    limits = {"per_account": 4, "per_address_account": 3, "per_address": 10,
              "address_delay": 30, "address_delay_max": 60, **login}  # fmt: skip
    return load_settings(
        orchestrator={"database": tmp_path / "unused.sqlite3", "database_url": url,
                      "login": limits, "trusted_proxies": ["127.0.0.0/8"]},
        ldap=slapd.settings().model_dump(mode="json"),
        jitsi={"domain": "meet.example.org", "app_secret": JITSI_SECRET},
    )  # fmt: skip


@pytest.fixture
def two_nodes(
    aiohttp_client: Any, slapd: Slapd, tmp_path: Path, new_pg_url: Callable[[], str]
) -> Callable[..., Any]:
    """Two orchestrator apps on one new PostgreSQL database, each on its own server."""

    async def start(**login: Any) -> tuple[Any, Any]:
        url = new_pg_url()
        a = await aiohttp_client(create_app(_settings(tmp_path / "a", slapd, url, **login)))
        b = await aiohttp_client(create_app(_settings(tmp_path / "b", slapd, url, **login)))
        assert a.server.port != b.server.port
        return a, b

    return start


async def test_failures_on_one_node_lock_the_account_on_the_other(
    two_nodes: Callable[..., Any],
) -> None:
    a, b = await two_nodes()
    # 4 failures for bob from 4 addresses, 2 on each node: each node saw only 2 (< 4)
    for i, node in enumerate((a, b, a, b)):
        assert (await login(node, "bob", "wrong", f"192.0.2.{i}")).status == 401
    before = await limited(b, "account")
    for node in (a, b):
        refused = await login(node, "ｂｏｂ", PASSWORDS["bob"], "198.51.100.2")
        assert refused.status == 429 and refused.retry_after > 0 and refused.who == ""
    assert await limited(b, "account") == before + 2
    assert (await login(b, "alice", PASSWORDS["alice"], "198.51.100.2")).status == 303


async def test_one_client_guessing_one_account_is_stopped_on_every_node(
    two_nodes: Callable[..., Any],
) -> None:
    a, b = await two_nodes()
    for node in (a, b, a):
        assert (await login(node, "alice", "wrong", ATTACKER)).status == 401
    before = await limited(b, "address_account")
    assert (await login(b, "alice", PASSWORDS["alice"], ATTACKER)).status == 429
    assert await limited(b, "address_account") == before + 1
    # alice elsewhere, and another account from the attacker's address, log in
    assert (await login(a, "alice", PASSWORDS["alice"], "198.51.100.9")).status == 303
    assert (await login(b, "carol", PASSWORDS["carol"], ATTACKER)).status == 303


async def test_an_address_is_delayed_by_failures_on_both_nodes(
    two_nodes: Callable[..., Any],
) -> None:
    a, b = await two_nodes(per_address=4)
    for i, node in enumerate((a, b, a, b)):
        assert (await login(node, f"ghost{i}", "x", ATTACKER)).status == 401
    before = await limited(a, "address")  # one registry per process: both nodes count here
    for node in (a, b):
        delayed = await login(node, "carol", PASSWORDS["carol"], ATTACKER)
        assert delayed.status == 429 and 29 <= delayed.retry_after <= 30
    assert await limited(a, "address") == before + 2
    assert (await login(a, "carol", PASSWORDS["carol"], "203.0.113.8")).status == 303


async def test_a_login_on_one_node_clears_the_failures_counted_on_the_other(
    two_nodes: Callable[..., Any],
) -> None:
    a, b = await two_nodes()
    for i in range(3):
        assert (await login(a, "carol", "wrong", f"192.0.2.{i}")).status == 401
    assert (await login(b, "carol", PASSWORDS["carol"], "198.51.100.3")).status == 303
    for i in range(3, 6):  # 6 failures in the window, but only 3 since the login
        assert (await login(a, "carol", "wrong", f"192.0.2.{i}")).status == 401
    assert (await login(b, "carol", PASSWORDS["carol"], "198.51.100.3")).status == 303
