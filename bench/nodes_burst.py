"""A reconnect burst (part of ``python -m bench nodes``): what a node sees when another
node holding thousands of readers dies and they all reconnect to it with Last-Event-ID.

``readers`` SSE readers of one room connect to one node at the same moment (no pacing),
from processes of their own, each resuming from Last-Event-ID ``n % captions`` of a room
that holds ``captions`` captions. Measured: the time until every reader is streaming, the
answers (200, 503 + Retry-After then retried, anything else), connection errors, and
whether each reader got exactly the captions after its id, in order.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from collections import Counter
from multiprocessing.connection import Connection
from typing import Any

import aiohttp

from bench.harness.nodes import Node, raise_fd_limit

PER_PROCESS = 2500


def _burst_process(url: str, room: str, first: int, count: int, captions: int,
                   pipe: Connection) -> None:  # fmt: skip
    raise_fd_limit()
    pipe.send(asyncio.run(_burst(url, room, first, count, captions, pipe)))


async def _burst(
    url: str, room: str, first: int, count: int, captions: int, pipe: Connection
) -> dict[str, Any]:
    statuses: Counter[str] = Counter()
    wrong = opened = 0
    streaming: list[float] = []
    assert pipe.recv() == "go"
    started = time.monotonic()

    async def one(http: aiohttp.ClientSession, n: int) -> None:
        nonlocal wrong, opened
        since = n % captions
        while True:
            try:
                headers = {"Last-Event-ID": str(since)}
                async with http.get(f"{url}/r/{room}/captions/stream", headers=headers) as r:
                    statuses[str(r.status)] += 1
                    if r.status == 503:
                        await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
                        continue
                    if r.status != 200:
                        return
                    ids = await _ids(r, captions)
                    streaming.append(time.monotonic() - started)
                    opened += 1
                    wrong += ids != list(range(since + 1, captions + 1))
                    return
            except (aiohttp.ClientError, OSError):
                statuses["connection error"] += 1
                await asyncio.sleep(1.0)

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120, sock_connect=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        await asyncio.gather(*(one(http, n) for n in range(first, first + count)))
    return {"statuses": dict(statuses), "opened": opened, "wrong": wrong,
            "seconds": max(streaming, default=0.0)}  # fmt: skip


async def _ids(r: aiohttp.ClientResponse, captions: int) -> list[int]:
    """The ids of the stream's events until caption number ``captions``."""
    ids: list[int] = []
    buffer = b""
    async for chunk in r.content.iter_any():
        buffer += chunk
        *events, buffer = buffer.split(b"\n\n")
        for event in events:
            if event.startswith(b"id: "):
                ids.append(int(event[4 : event.index(b"\n")]))
                if ids[-1] >= captions:
                    return ids
    return ids


async def reconnect_burst(node: Node, room: str, readers: int, captions: int) -> dict[str, Any]:
    """``readers`` reconnects to ``node`` at once; see the module text."""
    spawn = mp.get_context("spawn")
    pipes, procs = [], []
    for first in range(0, readers, PER_PROCESS):
        parent, child = spawn.Pipe()
        count = min(PER_PROCESS, readers - first)
        args = (node.url, room, first, count, captions, child)
        proc = spawn.Process(target=_burst_process, args=args)
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    await asyncio.sleep(3.0)  # the processes have started their loops
    for pipe in pipes:
        pipe.send("go")
    loop = asyncio.get_running_loop()
    parts = [await loop.run_in_executor(None, _answer, pipe) for pipe in pipes]
    for proc in procs:
        proc.join(30)
    statuses: Counter[str] = Counter()
    for part in parts:
        statuses.update(part["statuses"])
    return {
        "readers": readers,
        "streaming": sum(p["opened"] for p in parts),
        "seconds_until_all_streaming": round(max(p["seconds"] for p in parts), 1),
        "answers": dict(statuses),
        "resumed_wrong": sum(p["wrong"] for p in parts),
    }


def _answer(pipe: Connection) -> Any:
    if not pipe.poll(600):
        raise TimeoutError("a burst process did not answer")
    return pipe.recv()
