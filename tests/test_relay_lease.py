"""One IRC relay per channel by lease, against real servers: ngircd, PostgreSQL 15, the
orchestrator (``plenary serve --no-captioner``) and standalone ``plenary irc`` relay
processes (bench/lease.py starts them; lease time 3 s).

Two relays serve one room's channel; captions are posted over HTTP every second. The
relay holding the channel's lease is killed with SIGKILL once the orchestrator keeps
its last caption as delivered (nothing in flight: a line written in the last
milliseconds before a kill, not yet confirmed, would be posted again by the next
holder; see bots/irc/relay.py). The other relay takes over within the lease time and an
independent IRC client sees every caption exactly once, in order, from one relay at a
time. Then the survivor stops and a new ``plenary irc`` starts: it resumes after the
delivered position the orchestrator kept, so captions posted while no relay ran reach
IRC once and nothing is repeated. And the same with the relay built into two
``plenary serve`` nodes on one database: the node holding the lease is killed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.harness.ircservers import binary
from bench.lease import failover, lease_setup

LEASE = 3.0

pytestmark = pytest.mark.skipif(binary("ngircd") is None, reason="ngircd is not installed")


async def test_kill_the_holder_the_other_relay_takes_over_then_a_restart_resumes(
    tmp_path: Path, new_pg_url: Callable[[], str]
) -> None:
    async with lease_setup(tmp_path, new_pg_url(), LEASE) as setup:
        result = await failover(setup, 1, interval=1.0, before=4, after=4, idle_kill=True)
        assert result["exactly_once"], result
        assert result["one_relay_at_a_time"], result
        assert result["failover_s"] is not None and result["failover_s"] < LEASE + 0.5, result

        # The survivor was stopped (SIGTERM); captions come while no relay runs.
        room = "talk1"
        for _ in range(2):
            await setup.post(room)
        restarted = setup.relay("relay1c", room)
        restarted.start()
        for _ in range(2):
            await asyncio.sleep(0.5)
            last = await setup.post(room)
        await setup.until_all_seen(room, LEASE + 30)
        await setup.until_confirmed(room, last, 10)
        await asyncio.sleep(0.5)  # a repeat would show by now
        assert setup.words(room) == setup.posted[room]  # each once, in order
        assert {s.nick for s in setup.seen[room][-4:]} == {"relay1c"}


async def test_kill_the_node_holding_the_lease_the_other_node_relays(
    tmp_path: Path, new_pg_url: Callable[[], str]
) -> None:
    """Two ``plenary serve`` nodes on one PostgreSQL, each with the relay built in, the
    captions posted to a third node (reaching the nodes' streams by LISTEN/NOTIFY): the
    node whose relay holds the channel is killed; the other node's relay takes over
    within the lease time, each caption seen once, in order."""
    async with lease_setup(tmp_path, new_pg_url(), LEASE) as setup:
        room = await setup.room(2)
        (a, a_url), (b, b_url) = setup.node("node2a", room), setup.node("node2b", room)
        a.start()
        await setup.until_up(a_url, a)
        await setup.until_joined(a.name, room, 30)
        b.start()
        await setup.until_up(b_url, b)
        for _ in range(3):
            await asyncio.sleep(0.7)
            last = await setup.post(room)
        await setup.until_all_seen(room, 30)
        await setup.until_confirmed(room, last, 10)
        seen_at_kill = len(setup.seen[room])
        killed_at = a.kill()
        for _ in range(4):
            await asyncio.sleep(0.7)
            last = await setup.post(room)
        await setup.until_all_seen(room, LEASE + 30)
        await setup.until_confirmed(room, last, 10)
        await asyncio.sleep(0.5)  # a repeat would show by now
        assert setup.words(room) == setup.posted[room]  # each once, in order
        seen = setup.seen[room]
        assert {s.nick for s in seen[:seen_at_kill]} == {"node2a"}
        assert {s.nick for s in seen[seen_at_kill:]} == {"node2b"}
        assert seen[seen_at_kill].at - killed_at < LEASE + 0.5
