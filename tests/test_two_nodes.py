"""Two orchestrator nodes (real ``plenary serve --no-captioner`` processes) on one
PostgreSQL, HAProxy in front (bench/harness/nodes.py):

- captions posted to both nodes for one room at once are numbered strictly increasing,
  without gaps or duplicates, and a final retried on the other node is stored once;
- an SSE reader on node B gets what was posted on node A (captions and a correction), in
  order;
- kill -9 node A mid-stream: the captioner's delivery client fails over through HAProxy,
  SSE readers reconnect through HAProxy to B with Last-Event-ID; nothing lost, nothing
  twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from bench.harness.nodes import (
    ADMIN_TOKEN,
    PRODUCER_TOKEN,
    Node,
    NodeProxy,
    create_rooms,
    orchestrator_nodes,
    orchestrator_proxy,
)
from bench.harness.postgres import PostgresServer
from bots.captioner.delivery import Delivery
from bots.irc.source import SseParser
from orchestrator.captions.livebus import APPLICATION_NAME
from plenary.events import CaptionEvent

ROOMS = ["numbers", "relay", "relisten", "failover"]
AUTH = {"Authorization": f"Bearer {PRODUCER_TOKEN}"}


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, new_pg_url: Callable[[], str]
) -> Iterator[tuple[list[Node], NodeProxy]]:
    folder = tmp_path_factory.mktemp("nodes")
    url = new_pg_url()
    with orchestrator_nodes(folder, url) as nodes, orchestrator_proxy(folder, nodes) as proxy:
        create_rooms(nodes[0].url, ROOMS)
        yield nodes, proxy


async def _post(http: aiohttp.ClientSession, base: str, events: list[dict[str, Any]]) -> Any:
    async with http.post(f"{base}/api/v1/captions", json={"events": events}, headers=AUTH) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def _stored(http: aiohttp.ClientSession, base: str, room: str) -> list[dict[str, Any]]:
    """Every caption of ``room`` as node ``base`` serves it (the JSON poll)."""
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        async with http.get(f"{base}/api/v1/rooms/{room}/captions?after={after}&limit=500") as r:
            assert r.status == 200, await r.text()
            page = await r.json()
        found += page["events"]
        if page["next_after"] == after:
            return found
        after = page["next_after"]


@dataclass
class Reader:
    """An SSE reader of ``room``: first on ``first``, after any drop on ``again`` with
    Last-Event-ID (retrying until it is answered)."""

    room: str
    first: str
    again: str
    last: int = 0
    events: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    connected: list[str] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, http: aiohttp.ClientSession, done: Callable[[Reader], bool]) -> None:
        url = self.first
        while not done(self):
            headers = {"Last-Event-ID": str(self.last)}
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, ConnectionError):
                async with http.get(f"{url}/r/{self.room}/captions/stream", headers=headers) as r:
                    if r.status == 200:
                        self.connected.append(url)
                        self.ready.set()
                        await self._read(r, done)
            url = self.again
            if not done(self):
                await asyncio.sleep(0.1)

    async def _read(self, r: aiohttp.ClientResponse, done: Callable[[Reader], bool]) -> None:
        parser = SseParser()  # the relay's own parser
        async for chunk in r.content.iter_any():
            for message in parser.feed(chunk):
                if message.event not in ("caption", "correction"):  # those carry ids
                    continue
                self.last = int(message.id)
                self.events.append((self.last, message.event, json.loads(message.data)))
                if done(self):
                    return


def _event(room: str, text: str, event_id: str) -> dict[str, Any]:
    return {"id": event_id, "room": room, "speaker": "Ana", "text": text, "is_final": True}


async def test_both_nodes_number_one_room_gaplessly(
    cluster: tuple[list[Node], NodeProxy],
) -> None:
    (a, b), _proxy = cluster
    batches = 20

    async def producer(http: aiohttp.ClientSession, node: Node, name: str) -> list[int]:
        seqs = []
        for n in range(batches):
            events = [_event("numbers", f"{name} {n}.{i}", f"{name}-{n}-{i}") for i in range(3)]
            answer = await _post(http, node.url, events)
            seqs += [e["seq"] for e in answer["accepted"]]
        return seqs

    async with aiohttp.ClientSession() as http:
        seqs_a, seqs_b, seqs_c = await asyncio.gather(
            producer(http, a, "a"), producer(http, b, "b"), producer(http, a, "c")
        )
        # A batch retried on the other node (its answer lost) is stored once.
        retried = await _post(http, b.url, [_event("numbers", "a 0.0", "a-0-0")])
        stored = await _stored(http, b.url, "numbers")
    assert retried["accepted"][0]["duplicate"] and retried["accepted"][0]["seq"] == seqs_a[0]
    total = 3 * batches * 3
    assert sorted(seqs_a + seqs_b + seqs_c) == list(range(1, total + 1))
    assert [c["seq"] for c in stored] == list(range(1, total + 1))
    texts = [c["text"] for c in stored]
    assert len(set(texts)) == total
    # Each producer's captions are numbered in the order it posted them.
    for name in "abc":
        mine = [t for t in texts if t.startswith(f"{name} ")]
        assert mine == [f"{name} {n}.{i}" for n in range(batches) for i in range(3)]


async def test_a_reader_on_node_b_gets_what_node_a_took_in_order(
    cluster: tuple[list[Node], NodeProxy],
) -> None:
    (a, b), _proxy = cluster
    count = 30
    reader = Reader("relay", b.url, b.url)
    async with aiohttp.ClientSession() as http:
        task = asyncio.create_task(reader.run(http, lambda r: len(r.events) >= count + 1))
        await asyncio.wait_for(reader.ready.wait(), 10)
        for n in range(count):
            await _post(http, a.url, [_event("relay", f"line {n}", f"relay-{n}")])
        async with http.post(
            f"{a.url}/api/v1/rooms/relay/captions/3/corrections",
            json={"text": "line two, corrected"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as r:
            assert r.status == 200, await r.text()
        await asyncio.wait_for(task, 15)
        # Node B's page and text stream show what node A took, too.
        async with http.get(f"{b.url}/r/relay/captions") as r:
            assert r.status == 200 and f"line {count - 1}" in await r.text()
        async with http.get(f"{b.url}/r/relay/captions.txt?after={count - 1}") as r:
            lines = [await r.content.readline() for _ in range(2)]
        assert lines[1].decode().endswith(f"<Ana> line {count - 1}\n"), lines
    captions = [(i, d["text"]) for i, kind, d in reader.events if kind == "caption"]
    assert captions == [(n + 1, f"line {n}") for n in range(count)]
    assert reader.events[-1][:2] == (count + 1, "correction")
    assert reader.events[-1][2]["text"] == "line two, corrected"
    assert reader.connected == [b.url]


async def test_captions_missed_while_a_node_listens_again_are_caught_up(
    cluster: tuple[list[Node], NodeProxy], pg_server: PostgresServer
) -> None:
    """The listener connections are cut (pg_terminate_backend): captions stored
    meanwhile reach node B's reader once it listens again, in order."""
    (a, b), _proxy = cluster
    count = 40
    reader = Reader("relisten", b.url, b.url)
    async with aiohttp.ClientSession() as http:
        task = asyncio.create_task(reader.run(http, lambda r: len(r.events) >= count))
        await asyncio.wait_for(reader.ready.wait(), 10)
        await _post(http, a.url, [_event("relisten", "before", "relisten-0")])
        cut = pg_server.psql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE application_name = '{APPLICATION_NAME}'"
        )
        assert int(cut) == 2  # one listener per node
        for n in range(1, count):
            await _post(http, a.url, [_event("relisten", f"after {n}", f"relisten-{n}")])
        await asyncio.wait_for(task, 20)
    texts = [d["text"] for _i, _kind, d in reader.events]
    assert texts == ["before", *(f"after {n}" for n in range(1, count))]
    assert [i for i, _kind, _d in reader.events] == list(range(1, count + 1))
    assert reader.connected == [b.url]  # the reader's own connection was never cut


async def test_kill_9_node_a_mid_stream_loses_and_repeats_nothing(
    cluster: tuple[list[Node], NodeProxy],
) -> None:
    (a, b), proxy = cluster
    count, kill_at = 150, 50
    texts = [f"failover {n}" for n in range(count)]
    readers = [Reader("failover", node.url, proxy.url) for node in (a, a, b, b)]

    def complete(r: Reader) -> bool:
        return len(r.events) >= count

    delivery = Delivery(proxy.url, PRODUCER_TOKEN, queue=10_000)
    async with aiohttp.ClientSession() as http:
        tasks = [asyncio.create_task(r.run(http, complete)) for r in readers]
        await asyncio.wait_for(asyncio.gather(*(r.ready.wait() for r in readers)), 10)
        await delivery.start()
        try:
            for n, text in enumerate(texts):
                if n == kill_at:
                    a.kill()
                delivery.offer(
                    CaptionEvent("failover", "Ana", "en", text, True, n, n + 0.5, f"m{n}")
                )
                await asyncio.sleep(0.015)
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
        finally:
            await delivery.close(drain=5)
            for task in tasks:
                task.cancel()
        stored = await _stored(http, b.url, "failover")
    assert [c["text"] for c in stored] == texts  # stored once each, in order
    assert [c["seq"] for c in stored] == list(range(1, count + 1))
    for reader in readers:
        got = [(i, d["text"]) for i, _kind, d in reader.events]
        assert got == list(zip(range(1, count + 1), texts, strict=True))  # lost 0, twice 0
    # Those on A were cut off and resumed through HAProxy (on B, the only node left).
    for reader in readers[:2]:
        assert reader.connected[0] == a.url and len(reader.connected) >= 2
        assert set(reader.connected[1:]) == {proxy.url}
    assert delivery.delivered >= count and not delivery.finals
