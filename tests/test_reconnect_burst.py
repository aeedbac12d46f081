"""Opening many caption streams at once (what follows a node's death: its readers all
reconnect to a survivor with Last-Event-ID), and how stale a node's room cache may be
(orchestrator/captions/opening.py).

Two real ``plenary serve --no-captioner`` nodes on one PostgreSQL (bench/harness/nodes.py):

- 2,000 SSE readers connect to node B at the same moment, each with its own Last-Event-ID:
  every one is answered 200 (or 503 with Retry-After, then 200 on retry), none 500, each
  resumes right after its id, and all get the caption posted next on node A;
- a room made restricted on node A is refused on node A at once and on node B within the
  cache's bound (``ROOM_TTL_S``), and readable again within it once public again;
- in one process: a node whose opening slots are all taken answers 503 + Retry-After
  after its bounded wait, and opens the stream once a slot is free.

(A revoked read token is refused at once: tokens are not cached; test_captions_access.)
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bench.harness.nodes import (
    ADMIN_TOKEN,
    PRODUCER_TOKEN,
    Node,
    create_rooms,
    orchestrator_nodes,
    raise_fd_limit,
)
from bench.harness.rooms_helpers import AUTH as ROOMS_AUTH
from bench.harness.rooms_helpers import TOKEN as ROOMS_ADMIN
from bench.harness.rooms_helpers import room_json
from bots.irc.source import SseParser
from orchestrator.app import create_app
from orchestrator.app_keys import db_key
from orchestrator.captions.opening import OPENING_SLOTS, ROOM_TTL_S, opening_for
from plenary.settings import load_settings

BURST, CAPTIONS = 2000, 40
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory, new_pg_url: Callable[[], str]) -> Iterator[
    list[Node]
]:  # fmt: skip
    raise_fd_limit()
    with orchestrator_nodes(tmp_path_factory.mktemp("burst"), new_pg_url()) as found:
        create_rooms(found[0].url, ["burst", "stale"])
        yield found


async def _post(http: aiohttp.ClientSession, base: str, room: str, texts: list[str]) -> None:
    events = [{"id": f"{room}-{t}", "room": room, "speaker": "Ana", "text": t, "is_final": True}
              for t in texts]  # fmt: skip
    headers = {"Authorization": f"Bearer {PRODUCER_TOKEN}"}
    async with http.post(f"{base}/api/v1/captions", json={"events": events}, headers=headers) as r:
        assert r.status == 200, await r.text()


@dataclass
class Reader:
    """One SSE reader resuming after ``since``: its answers' statuses and the ids it got."""

    since: int
    statuses: list[int] = field(default_factory=list)
    retry_after: list[str | None] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    async def run(self, http: aiohttp.ClientSession, url: str, opened: Callable[[], None],
                  until: int) -> None:  # fmt: skip
        headers = {"Last-Event-ID": str(self.since)}
        while True:
            async with http.get(url, headers=headers) as r:
                self.statuses.append(r.status)
                self.retry_after.append(r.headers.get("Retry-After"))
                if r.status == 503:
                    await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
                    continue
                if r.status != 200:
                    return
                opened()
                await self._read(r, until)
                return

    async def _read(self, r: aiohttp.ClientResponse, until: int) -> None:
        parser = SseParser()  # the relay's own parser
        async for chunk in r.content.iter_any():
            for message in parser.feed(chunk):
                if message.event != "caption":
                    continue
                self.ids.append(int(message.id))
                self.texts.append(json.loads(message.data)["text"])
                if self.ids[-1] >= until:
                    return


async def test_a_burst_of_reconnects_to_one_node_all_resume(nodes: list[Node]) -> None:
    a, b = nodes
    texts = [f"line {n}" for n in range(1, CAPTIONS + 1)]
    readers = [Reader(since=n % CAPTIONS) for n in range(BURST)]
    all_open = asyncio.Event()
    count = 0

    def opened() -> None:
        nonlocal count
        count += 1
        if count == BURST:
            all_open.set()

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60, sock_connect=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        await _post(http, a.url, "burst", texts)
        url = f"{b.url}/r/burst/captions/stream"
        started = time.monotonic()
        tasks = [asyncio.create_task(r.run(http, url, opened, CAPTIONS + 1)) for r in readers]
        done, _ = await asyncio.wait(
            [asyncio.create_task(all_open.wait()), *tasks],
            timeout=30,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if not all_open.is_set():  # a reader ended early: show how
            for task in tasks:
                task.cancel()
            bad = [r.statuses for r in readers if r.statuses[-1:] != [200]][:5]
            pytest.fail(f"{count} of {BURST} streams open; some answers: {bad}")
        opening = time.monotonic() - started
        # Live, from the other node: every reader gets it after its backlog.
        await _post(http, a.url, "burst", ["live"])
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    statuses = [s for r in readers for s in r.statuses]
    assert set(statuses) <= {200, 503}, sorted(set(statuses))
    for reader in readers:
        assert reader.statuses[-1] == 200
        for status, retry in zip(reader.statuses, reader.retry_after, strict=True):
            assert status == 200 or (retry is not None and int(retry) > 0)
        # Resumed right after its Last-Event-ID, nothing missing, nothing twice.
        assert reader.ids == list(range(reader.since + 1, CAPTIONS + 2))
        assert reader.texts == texts[reader.since :] + ["live"]
    print(f"{BURST} streams open in {opening:.1f} s; {statuses.count(503)} answers 503")


async def _status(http: aiohttp.ClientSession, base: str, room: str) -> int:
    """The status of a new SSE stream of ``room`` on ``base`` (the stream is then closed)."""
    async with http.get(f"{base}/r/{room}/captions/stream") as r:
        return r.status


async def _patch(http: aiohttp.ClientSession, base: str, room: str, **fields: Any) -> None:
    async with http.patch(f"{base}/api/v1/rooms/{room}", json=fields, headers=ADMIN) as r:
        assert r.status == 200, await r.text()


async def _until(http: aiohttp.ClientSession, base: str, room: str, status: int) -> float:
    """Seconds until a new stream of ``room`` on ``base`` is answered ``status``."""
    started = time.monotonic()
    while await _status(http, base, room) != status:
        assert time.monotonic() - started < ROOM_TTL_S + 5, f"never {status}"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_a_room_made_restricted_is_refused_on_every_node_within_the_bound(
    nodes: list[Node],
) -> None:
    a, b = nodes
    async with aiohttp.ClientSession() as http:
        for _ in range(3):  # both nodes have the public room in their caches
            assert await _status(http, a.url, "stale") == 200
            assert await _status(http, b.url, "stale") == 200
        await _patch(http, a.url, "stale", caption_readers=[])
        changed = time.monotonic()
        assert await _status(http, a.url, "stale") == 401  # the node that changed it: at once
        await _until(http, b.url, "stale", 401)
        refused_b = time.monotonic() - changed
        assert refused_b <= ROOM_TTL_S + 0.5, refused_b
        # Anonymous programs are refused on both from then on (not a fluke of one read).
        for _ in range(5):
            assert await _status(http, b.url, "stale") == 401
        await _patch(http, b.url, "stale", caption_readers=[{"kind": "anyone"}])
        assert await _status(http, b.url, "stale") == 200
        assert await _until(http, a.url, "stale", 200) <= ROOM_TTL_S + 0.5
    print(f"node B refused the restricted room {refused_b:.2f} s after the change on A")


@pytest.fixture
async def one_node(tmp_path: Path) -> AsyncIterator[TestServer]:
    settings = load_settings(
        orchestrator={"database": tmp_path / "db.sqlite3", "admin_token": ROOMS_ADMIN},
    )
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as http:
        made = await http.post(
            str(server.make_url("/api/v1/rooms")), json=room_json("busy"), headers=ROOMS_AUTH
        )
        assert made.status == 201, await made.text()
    yield server
    await server.close()


async def test_a_node_with_no_free_opening_slot_answers_503_with_retry_after(
    one_node: TestServer,
) -> None:
    opening = opening_for(one_node.app[db_key])
    opening.wait = 0.3
    url = str(one_node.make_url("/r/busy/captions/stream"))
    held = [opening.slot() for _ in range(OPENING_SLOTS)]
    for slot in held:
        await slot.__aenter__()
    async with aiohttp.ClientSession() as http:
        try:
            async with http.get(url) as r:
                assert r.status == 503
                assert r.headers["Retry-After"] == "2"
                assert "retry" in (await r.json())["detail"]
        finally:
            for slot in held:
                await slot.__aexit__(None, None, None)
        async with http.get(url, headers={"Last-Event-ID": "0"}) as r:
            assert r.status == 200
            assert (await r.content.readline()).startswith(b"retry: ")
