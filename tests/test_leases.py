"""Leases (orchestrator/leases.py) on SQLite and PostgreSQL: one holder at a time, taken
over once run out, renewed by their holder only; ``run_while_held`` runs a task on one
node of several and hands it over when its holder stops renewing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from aiohttp.test_utils import TestServer

from bench.harness.fake_jvb import CURRENT, FakeBridge, load_fixture
from orchestrator.app import create_app
from orchestrator.db import Database
from orchestrator.jvb import StatsPoller
from orchestrator.leases import Leases, run_while_held
from plenary.settings import MetricsSettings, load_settings


async def test_one_holder_until_it_runs_out(database_url: str) -> None:
    db = await Database.open(database_url)
    try:
        leases = Leases(db)
        a = await leases.acquire("job", "a", ttl_ms=600)
        assert a.held and a.holder == "a" and a.expires_at_ms - a.now_ms == 600
        b = await leases.acquire("job", "b", ttl_ms=600)
        assert not b.held and b.holder == "a" and b.expires_at_ms == a.expires_at_ms
        renewed = await leases.acquire("job", "a", ttl_ms=600)  # renewing moves the expiry
        assert renewed.held and renewed.expires_at_ms >= a.expires_at_ms
        assert (await leases.acquire("other", "b", ttl_ms=600)).held  # per name
        await asyncio.sleep(0.7)
        taken = await leases.acquire("job", "b", ttl_ms=600)
        assert taken.held and taken.holder == "b"
        late = await leases.acquire("job", "a", ttl_ms=600)  # a's renewal comes too late
        assert not late.held and late.holder == "b"
        assert not await leases.release("job", "a")  # only the holder releases
        assert await leases.release("job", "b")
        assert (await leases.acquire("job", "a", ttl_ms=600)).held  # free again at once
    finally:
        await db.close()


async def test_many_takers_at_once_one_wins(database_url: str) -> None:
    dbs = [await Database.open(database_url) for _ in range(3)]
    try:
        claims = await asyncio.gather(
            *(Leases(dbs[i % 3]).acquire("race", f"n{i}", ttl_ms=5000) for i in range(12))
        )
        winners = {c.holder for c in claims if c.held}
        assert len(winners) == 1
        assert all(c.holder in winners for c in claims)  # the losers name the winner
    finally:
        for db in dbs:
            await db.close()


async def test_guarded_task_runs_on_one_node_and_moves_on_failure(database_url: str) -> None:
    """Two nodes guard the same task: it runs on one; when that node's database goes
    away (renewals fail), its task stops before the lease runs out and the other node
    takes over within the lease time."""
    ttl = 1.2
    dbs = [await Database.open(database_url) for _ in range(2)]
    running: dict[str, list[tuple[float, float]]] = {"a": [], "b": []}

    def work(node: str) -> object:
        async def run() -> None:
            started = time.monotonic()
            try:
                await asyncio.Event().wait()
            finally:
                running[node].append((started, time.monotonic()))

        return run

    guards = {
        node: asyncio.create_task(
            run_while_held(dbs[i], "poller", work(node), ttl=ttl, holder=node)  # type: ignore[arg-type]
        )
        for i, node in enumerate("ab")
    }
    try:
        await asyncio.sleep(ttl * 1.5)
        holder = (await Leases(dbs[0]).acquire("poller", "probe", ttl_ms=1)).holder
        other = "b" if holder == "a" else "a"
        assert not running[holder] and not running[other]  # one runs, none has stopped
        # The holder's database goes away: its renewals fail.
        held_db = dbs[0 if holder == "a" else 1]
        await held_db.engine.dispose()
        broken = held_db.engine.url.set(database="/nonexistent/dir/x.sqlite3")
        if held_db.dialect == "postgresql":
            broken = held_db.engine.url.set(port=1)
        from sqlalchemy.ext.asyncio import create_async_engine

        held_db.engine = create_async_engine(broken)
        lost_at = time.monotonic()
        await asyncio.sleep(ttl * 2)
        assert len(running[holder]) == 1
        assert running[holder][0][1] - lost_at < ttl  # stopped before the lease ran out
        assert (
            await Leases(dbs[1 if holder == "a" else 0]).acquire("poller", "probe", 1)
        ).holder == other
    finally:
        for task in guards.values():
            task.cancel()
        await asyncio.gather(*guards.values(), return_exceptions=True)
        for db in dbs:
            await db.close()


async def test_one_node_polls_the_videobridge(database_url: str) -> None:
    """Two nodes' pollers on one database: one polls the bridge and presents its series,
    the other presents none; when the polling node stops, the other takes over."""
    bridge = FakeBridge(load_fixture(CURRENT))
    await bridge.start()
    dbs = [await Database.open(database_url) for _ in range(2)]
    settings = MetricsSettings(bridges=[bridge.url], poll_interval=1)
    pollers = [StatsPoller(settings) for _ in range(2)]
    tasks = [asyncio.create_task(p.run_held(db, 1.0)) for p, db in zip(pollers, dbs, strict=True)]
    try:
        await asyncio.sleep(0.5)  # polls at once on taking the lease, then every second
        polling = [p for p in pollers if p.polls]
        assert len(polling) == 1
        assert [bool(list(p.collect())) for p in pollers] == [p is polling[0] for p in pollers]
        first = pollers.index(polling[0])
        tasks[first].cancel()  # that node stops (its lease is given up)
        await asyncio.gather(tasks[first], return_exceptions=True)
        assert not list(pollers[first].collect())
        other = pollers[1 - first]
        before = other.polls
        await asyncio.sleep(1.0)  # it tries the free lease every ttl/3
        assert other.polls > before and list(other.collect())
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for db in dbs:
            await db.close()
        await bridge.stop()


async def test_retention_runs_on_one_node(database_url: str, tmp_path: Path) -> None:
    """Two orchestrator apps on one database: the caption retention task runs under the
    lease ``caption-retention``, held by one of them and kept (the other does not take
    it); with one app stopped the other holds it; with both stopped it is free."""
    settings = load_settings(
        orchestrator={"database_url": database_url, "lease_seconds": 1.0,
                      "database": tmp_path / "unused.sqlite3"},
        captions={"retention_interval_seconds": 3600},
    )  # fmt: skip
    servers = [TestServer(create_app(settings)) for _ in range(2)]
    for server in servers:
        await server.start_server()
    db = await Database.open(database_url)
    probe = Leases(db)
    try:
        first = (await probe.acquire("caption-retention", "probe", 1)).holder
        assert first != "probe"
        await asyncio.sleep(1.5)  # renewed by its holder, not taken by the other
        assert (await probe.acquire("caption-retention", "probe", 1)).holder == first
        await servers[0].close()
        await asyncio.sleep(1.0)  # the survivor holds it (has, or took it over)
        assert (await probe.acquire("caption-retention", "probe", 1)).holder != "probe"
        await servers[1].close()  # released on the way out
        assert (await probe.acquire("caption-retention", "probe", 1)).held
    finally:
        for server in servers:
            await server.close()
        await db.close()
