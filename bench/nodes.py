"""Orchestrator nodes on PostgreSQL (issue 16): SSE fan-out over 2 nodes, and sustained
captions/s into one database with 50 rooms; the single-node figures in the same run.

    .venv/bin/python -m bench nodes            # 10,000 subscribers; 50 rooms for 20 s
    .venv/bin/python -m bench nodes --quick    # 1,000 subscribers; 10 rooms for 5 s

Fan-out: a throwaway PostgreSQL 15 (bench/harness/postgres.py), two ``plenary serve
--no-captioner`` nodes on it (bench/harness/nodes.py), N SSE subscribers of one room, half
on each node, held by subscriber processes of their own (one asyncio loop cannot parse
10,000 streams without being the bottleneck). 30 captions are posted to node A every
0.5 s; latency is from the moment a caption is posted to when the last subscriber (of
both nodes) has it (CLOCK_MONOTONIC is one clock for every process). Then the
single-node benchmark of bench/sse.py (2,000 subscribers, SQLite) as it was measured
before. CPU and RSS per node from /proc. Then half as many readers reconnect to node 2
all at once with Last-Event-ID, as after a node's death (bench/nodes_burst.py).

Throughput: 50 rooms, 2 producers per room, each posting one final at a time (``POST
/api/v1/captions``, an event id each) as fast as answered, for a fixed time; on
PostgreSQL through both nodes (half the producers each), then one node on SQLite.
Afterwards every room's numbers are checked gapless (count = last number).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp

from bench import sse
from bench.harness.nodes import (
    PRODUCER_TOKEN,
    Node,
    create_rooms,
    orchestrator_nodes,
    raise_fd_limit,
)
from bench.harness.postgres import postgres_server
from bench.nodes_burst import reconnect_burst
from bench.stats import table

ROOM, SMALL_ROOM = "fanout", "fanout-small"
CAPTIONS, INTERVAL = 30, 0.5
SUBSCRIBERS_PER_PROCESS = 2500
# Each process opens CONNECT_BURST streams every CONNECT_PAUSE s: 4 processes, ~500/s in
# all, as attendees arrive. The burst of readers all reconnecting at once is measured on
# its own (bench/nodes_burst.py).
CONNECT_BURST, CONNECT_PAUSE = 25, 0.2
AUTH = {"Authorization": f"Bearer {PRODUCER_TOKEN}"}


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered)) - 1))
    return ordered[k]


# ---- subscriber processes -----------------------------------------------------------------


def _subscriber_process(urls: list[str], room: str, captions: int, pipe: Connection) -> None:
    """Hold one SSE stream per url (of ``room``, from its start); tell the parent when all
    are open, then send back when each got each caption: {seq: [monotonic, …]}."""
    raise_fd_limit()
    pipe.send(asyncio.run(_subscribe(urls, room, captions, pipe)))


async def _subscribe(
    urls: list[str], room: str, captions: int, pipe: Connection
) -> dict[int, list[float]]:
    received: dict[int, list[float]] = {}
    opened = refused = 0
    all_open = asyncio.Event()

    async def one(http: aiohttp.ClientSession, url: str) -> None:
        nonlocal opened, refused
        headers = {"Last-Event-ID": "0"}
        while True:  # a node that cannot take it yet (busy pool) is asked again
            try:
                async with http.get(f"{url}/r/{room}/captions/stream", headers=headers) as r:
                    if r.status != 200:
                        refused += 1
                        await asyncio.sleep(1.0)
                        continue
                    opened += 1
                    if opened == len(urls):
                        all_open.set()
                    await read(r)
                    return
            except (aiohttp.ClientError, OSError):
                refused += 1
                await asyncio.sleep(1.0)

    async def read(r: aiohttp.ClientResponse) -> None:
        buffer = b""
        async for chunk in r.content.iter_any():
            now = time.monotonic()
            buffer += chunk
            *events, buffer = buffer.split(b"\n\n")
            for event in events:
                if event.startswith(b"id: "):
                    seq = int(event[4 : event.index(b"\n")])
                    received.setdefault(seq, []).append(now)
                    if seq >= captions:
                        return

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None, sock_connect=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        tasks = []
        for n, url in enumerate(urls):
            tasks.append(asyncio.create_task(one(http, url)))
            if n % CONNECT_BURST == CONNECT_BURST - 1:
                await asyncio.sleep(CONNECT_PAUSE)  # attendees arrive over seconds
        await asyncio.wait_for(all_open.wait(), 600)
        pipe.send("open")
        await asyncio.gather(*tasks)
    received[0] = [float(refused)]  # how many connects were refused or failed first
    return received


async def fan_out(nodes: list[Node], subscribers: int, room: str = ROOM) -> dict[str, Any]:
    """``subscribers`` SSE readers spread over ``nodes``; captions posted to the first."""
    urls = [nodes[n % len(nodes)].url for n in range(subscribers)]
    chunks = [
        urls[i : i + SUBSCRIBERS_PER_PROCESS]
        for i in range(0, subscribers, SUBSCRIBERS_PER_PROCESS)
    ]
    spawn = mp.get_context("spawn")
    pipes, procs = [], []
    for chunk in chunks:
        parent, child = spawn.Pipe()
        proc = spawn.Process(target=_subscriber_process, args=(chunk, room, CAPTIONS, child))
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    loop = asyncio.get_running_loop()
    opening = time.monotonic()
    for pipe in pipes:  # each says "open" once all its streams are
        assert await loop.run_in_executor(None, _recv, pipe, 900) == "open"
    opened_in = time.monotonic() - opening
    await asyncio.sleep(1.0)
    before = {n.name: sse._proc(n.pid) for n in nodes}
    clients_before = sum(_cpu_s(p.pid or 0) for p in procs)
    sent: dict[int, float] = {}
    answered: list[float] = []
    async with aiohttp.ClientSession() as http:
        for n in range(1, CAPTIONS + 1):
            sent[n] = time.monotonic()
            event = {
                "speaker": "김민지",
                "text": f"{n} 안녕하세요 여러분, 오늘 회의를 시작하겠습니다.",
            }
            async with http.post(
                f"{nodes[0].url}/api/v1/rooms/{room}/captions", json=event, headers=AUTH
            ) as r:
                assert r.status == 202, await r.text()
            answered.append((time.monotonic() - sent[n]) * 1000)
            await asyncio.sleep(INTERVAL)
    received: dict[int, list[float]] = {}
    refused = 0
    for pipe in pipes:
        part: dict[int, list[float]] = await loop.run_in_executor(None, _recv, pipe, 300)
        refused += int(part.pop(0)[0])
        for seq, times in part.items():
            received.setdefault(seq, []).extend(times)
    after = {n.name: sse._proc(n.pid) for n in nodes}
    clients = sum(_cpu_s(p.pid or 0) for p in procs) - clients_before
    for proc in procs:
        proc.join(30)
    last = [(max(received[n]) - sent[n]) * 1000 for n in sent]
    every = [(t - sent[n]) * 1000 for n in sent for t in received.get(n, ())]
    seconds = CAPTIONS * INTERVAL
    return {
        "subscribers": subscribers,
        "nodes": len(nodes),
        "subscriber_processes": len(chunks),
        "captions": CAPTIONS,
        "connects_refused_then_retried": refused,
        "seconds_to_open_all": round(opened_in, 1),
        "all_delivered": all(len(received.get(n, ())) == subscribers for n in sent),
        "post_answered_ms_p95": round(_pct(answered, 95), 1),
        "last_subscriber_ms": {
            "p50": round(statistics.median(last), 1),
            "p95": round(_pct(last, 95), 1),
            "max": round(max(last), 1),
        },
        "any_subscriber_ms": {
            "p50": round(statistics.median(every), 1),
            "p95": round(_pct(every, 95), 1),
        },
        "subscriber_processes_cpu_percent": round(100 * clients / (CAPTIONS * INTERVAL), 1),
        "per_node": {
            name: {
                "cpu_percent_during_captions": round(
                    100 * (after[name]["cpu_s"] - before[name]["cpu_s"]) / seconds, 1
                ),
                "rss_mb_idle_subscribed": round(before[name]["rss_mb"], 1),
                "peak_rss_mb": round(after[name]["peak_rss_mb"], 1),
            }
            for name in before
        },
    }


def _cpu_s(pid: int) -> float:
    """CPU seconds of a process, also once it has exited and not yet been reaped (a
    zombie has no VmRSS for sse._proc); 0 when gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _recv(pipe: Connection, limit: float) -> Any:
    if not pipe.poll(limit):
        raise TimeoutError("a subscriber process did not answer")
    return pipe.recv()


# ---- throughput -----------------------------------------------------------------------


async def throughput(nodes: list[Node], rooms: list[str], seconds: float) -> dict[str, Any]:
    """Producers (2 per room, spread over ``nodes``) post finals one at a time."""
    stop = time.monotonic() + seconds
    latencies: list[float] = []
    errors = 0

    async def producer(http: aiohttp.ClientSession, url: str, room: str, name: str) -> int:
        nonlocal errors
        n = 0
        while time.monotonic() < stop:
            n += 1
            event = {"id": f"{name}-{n}", "room": room, "speaker": "Ana", "is_final": True,
                     "text": f"{name} caption {n}, a sentence of ordinary length."}  # fmt: skip
            started = time.monotonic()
            async with http.post(
                f"{url}/api/v1/captions", json={"events": [event]}, headers=AUTH
            ) as r:
                if r.status != 200:
                    errors += 1
                await r.read()
            latencies.append((time.monotonic() - started) * 1000)
        return n

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        before = {n.name: sse._proc(n.pid) for n in nodes}
        started = time.monotonic()
        jobs = [
            producer(http, nodes[(2 * i + k) % len(nodes)].url, room, f"{room}-p{k}")
            for i, room in enumerate(rooms)
            for k in range(2)
        ]
        posted = sum(await asyncio.gather(*jobs))
        elapsed = time.monotonic() - started
        after = {n.name: sse._proc(n.pid) for n in nodes}
        gapless = True
        stored = 0
        for room in rooms:
            async with http.get(f"{nodes[-1].url}/api/v1/rooms/{room}/captions?limit=1") as r:
                last = (await r.json())["last_seq"]
            count = await _count(http, nodes[-1].url, room)
            stored += count
            gapless = gapless and count == last
    return {
        "nodes": len(nodes),
        "rooms": len(rooms),
        "producers": 2 * len(rooms),
        "seconds": round(elapsed, 1),
        "captions_per_second": round(stored / elapsed, 1),
        "posted": posted,
        "stored": stored,
        "errors": errors,
        "numbers_gapless": gapless,
        "post_ms": {
            "p50": round(statistics.median(latencies), 1),
            "p95": round(_pct(latencies, 95), 1),
        },  # fmt: skip
        "cpu_percent_per_node": {
            n: round(100 * (after[n]["cpu_s"] - before[n]["cpu_s"]) / elapsed, 1) for n in before
        },
    }


async def _count(http: aiohttp.ClientSession, url: str, room: str) -> int:
    count, after = 0, 0
    while True:
        async with http.get(f"{url}/api/v1/rooms/{room}/captions?after={after}&limit=1000") as r:
            page = await r.json()
        count += len(page["events"])
        if page["next_after"] == after:
            return count
        after = page["next_after"]


# ---- the run ----------------------------------------------------------------------------


async def run(quick: bool) -> dict[str, Any]:
    fd_limit = raise_fd_limit()
    subscribers = 1000 if quick else 10_000
    room_count, seconds = (10, 5.0) if quick else (50, 20.0)
    rooms = [f"room{n:02d}" for n in range(room_count)]
    result: dict[str, Any] = {"fd_limit": fd_limit}
    folder = Path(tempfile.mkdtemp(prefix="plenary-nodes-"))  # kept: the servers' logs
    print(f"nodes: logs in {folder}", flush=True)
    with postgres_server() as pg:
        for name in ("fanout", "throughput"):
            (folder / name).mkdir()
        url = pg.create_database("fanout")
        with orchestrator_nodes(folder / "fanout", url) as nodes:
            create_rooms(nodes[0].url, [ROOM, SMALL_ROOM])
            print(f"nodes: {subscribers} subscribers on 2 nodes …", flush=True)
            result["fan_out_2_nodes_postgresql"] = await fan_out(nodes, subscribers)
            small = subscribers // 5
            print(f"nodes: {small} subscribers on 2 nodes …", flush=True)
            result["fan_out_2_nodes_postgresql_small"] = await fan_out(nodes, small, SMALL_ROOM)
            burst = subscribers // 2
            print(f"nodes: {burst} readers reconnect to node 2 at once …", flush=True)
            result["reconnect_burst_1_node"] = await reconnect_burst(
                nodes[1], ROOM, burst, CAPTIONS
            )
        url = pg.create_database("throughput")
        with orchestrator_nodes(folder / "throughput", url) as nodes:
            create_rooms(nodes[0].url, rooms)
            print(f"nodes: {len(rooms)} rooms into PostgreSQL through 2 nodes …", flush=True)
            result["throughput_postgresql_2_nodes"] = await throughput(nodes, rooms, seconds)
            print(f"nodes: {len(rooms)} rooms into PostgreSQL through node 1 …", flush=True)
            result["throughput_postgresql_1_node"] = await throughput(nodes[:1], rooms, seconds)
    (folder / "sqlite").mkdir()
    sqlite_url = f"sqlite:///{folder / 'sqlite' / 'plenary.sqlite3'}"
    with orchestrator_nodes(folder / "sqlite", sqlite_url, count=1) as nodes:
        create_rooms(nodes[0].url, rooms)
        print(f"nodes: {len(rooms)} rooms into SQLite through one node …", flush=True)
        result["throughput_sqlite_1_node"] = await throughput(nodes, rooms, seconds)
    print("nodes: single node, SQLite, 2,000 subscribers (bench/sse.py) …", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        server = sse.Server(Path(tmp))
        try:
            async with aiohttp.ClientSession() as http:
                await server.ready(http)
            result["fan_out_1_node_sqlite"] = await sse.fan_out(
                server, 200 if quick else 2000, CAPTIONS, INTERVAL
            )
        finally:
            server.stop()
    return result


def report(data: dict[str, Any]) -> str:
    one = data["fan_out_1_node_sqlite"]
    rows = [
        ["2 nodes, PostgreSQL", two["subscribers"], two["all_delivered"],
         two["last_subscriber_ms"]["p50"], two["last_subscriber_ms"]["p95"],
         two["last_subscriber_ms"]["max"],
         " / ".join(str(n["cpu_percent_during_captions"]) for n in two["per_node"].values()),
         " / ".join(str(n["rss_mb_idle_subscribed"]) for n in two["per_node"].values()),
         " / ".join(str(n["peak_rss_mb"]) for n in two["per_node"].values())]
        for two in (data["fan_out_2_nodes_postgresql"], data["fan_out_2_nodes_postgresql_small"])
    ] + [
        ["1 node, SQLite", one["subscribers"], one["all_delivered"],
         one["last_subscriber_ms"]["p50"], one["last_subscriber_ms"]["p95"],
         one["last_subscriber_ms"]["max"], one["server_cpu_percent_during_captions"],
         one["server_rss_mb_idle_subscribed"], one["server_peak_rss_mb"]],
    ]  # fmt: skip
    fan = table(
        ["setup", "subscribers", "all delivered", "last p50 ms", "last p95 ms", "last max ms",
         "CPU % per node", "RSS MB subscribed", "peak RSS MB"],
        rows, "== SSE fan-out: caption posted → last subscriber (goal p95 ≤ 500 ms) ==",
    )  # fmt: skip
    runs = {
        "PostgreSQL, 2 nodes": data["throughput_postgresql_2_nodes"],
        "PostgreSQL, 1 node": data["throughput_postgresql_1_node"],
        "SQLite, 1 node": data["throughput_sqlite_1_node"],
    }
    rows = [
        [name, r["rooms"], r["producers"], r["captions_per_second"], r["stored"], r["errors"],
         r["numbers_gapless"], r["post_ms"]["p50"], r["post_ms"]["p95"],
         " / ".join(str(v) for v in r["cpu_percent_per_node"].values())]
        for name, r in runs.items()
    ]  # fmt: skip
    put = table(
        ["store", "rooms", "producers", "captions/s", "stored", "errors", "gapless",
         "post p50 ms", "post p95 ms", "CPU % per node"],
        rows, "== sustained captions/s (one final per POST) ==",
    )  # fmt: skip
    burst = data.get("reconnect_burst_1_node")
    if burst:
        put += (
            f"\n\n== reconnect burst: {burst['readers']} readers to one node at once with "
            f"Last-Event-ID ==\nall streaming after {burst['seconds_until_all_streaming']} s; "
            f"{burst['streaming']} streaming; answers {burst['answers']}; resumed at the "
            f"wrong position: {burst['resumed_wrong']}"
        )
    return f"{fan}\n\n{put}"
