"""Two orchestrator nodes on one database: each a ``Database`` of its own (its own engine
and connections), captions for one room accepted by both at once. The numbers are
strictly increasing for each producer, gapless and without duplicates over both nodes;
a final retried on the other node is stored once; the captions share one session."""

from __future__ import annotations

import asyncio

from orchestrator.captions.store import CaptionStore, Duplicate
from orchestrator.captions.store_rows import lock_room
from orchestrator.db import Database
from plenary.events import CaptionEvent
from plenary.settings import load_settings

PRODUCERS_PER_NODE = 4
CAPTIONS_PER_PRODUCER = 25
ROOM = "hall"


def final(text: str, event_id: str = "") -> CaptionEvent:
    return CaptionEvent(room=ROOM, speaker="Kim", language="ko", text=text, is_final=True,
                        start=0.0, end=1.0, message_id=text, event_id=event_id)  # fmt: skip


async def produce(store: CaptionStore, name: str, at_ms: int) -> list[int]:
    """One producer posting its captions one after the other; the numbers it got."""
    seqs = []
    for n in range(CAPTIONS_PER_PRODUCER):
        caption = await store.append(ROOM, final(f"{name} {n}"), at_ms + n, keep=True)
        seqs.append(caption.seq)
    return seqs


async def test_two_nodes_number_one_room_gapless(database_url: str) -> None:
    settings = load_settings().captions
    # Both nodes start at once: the migration runs once (the other waits, then finds head).
    nodes = await asyncio.gather(Database.open(database_url), Database.open(database_url))
    stores = [CaptionStore(db, settings) for db in nodes]
    now = 1_800_000_000_000
    try:
        runs = [
            produce(store, f"node{i}-producer{p}", now)
            for i, store in enumerate(stores)
            for p in range(PRODUCERS_PER_NODE)
        ]
        # A producer retrying the same final on both nodes while a write of the room
        # holds it (a slow transaction of node 0): they all wait, then one stores it.
        held = asyncio.Event()

        async def slow_write() -> None:
            async with nodes[0].write() as conn:
                await lock_room(conn, ROOM)
                held.set()
                await asyncio.sleep(0.3)

        blocker = asyncio.create_task(slow_write())
        await held.wait()
        retries = [stores[i % 2].append(ROOM, final("retried", "ev-1"), now, keep=True)
                   for i in range(4)]  # fmt: skip
        together = asyncio.gather(*retries)
        per_producer = await asyncio.gather(*runs)
        retried = await together
        await blocker
        for seqs in per_producer:
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # strictly increasing
        first = [c for c in retried if not isinstance(c, Duplicate)]
        assert len(first) == 1 and all(c.seq == first[0].seq for c in retried)
        numbers = sorted([s for seqs in per_producer for s in seqs] + [first[0].seq])
        total = len(runs) * CAPTIONS_PER_PRODUCER + 1
        assert numbers == list(range(1, total + 1))  # gapless, no duplicates

        # Both nodes read the same room: every caption once, in number order, one session.
        for store in stores:
            stored = await store.after(ROOM, 0, limit=10_000)
            assert [c.seq for c in stored] == list(range(1, total + 1))
            assert await store.last_seq(ROOM) == total
            assert len(await store.sessions(ROOM)) == 1
        # A correction on either node takes the next number.
        fix = await stores[1].correct(ROOM, 1, "고침", None, "alice", now + 100, 3_600_000)
        assert fix.pos == total + 1
        assert (await stores[0].append(ROOM, final("after"), now + 200, keep=True)).seq == total + 2
    finally:
        for db in nodes:
            await db.close()
