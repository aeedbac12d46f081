"""Scrape cost: ``/metrics`` latency with 100 rooms, 100 caption streams and 10 bridges.

The orchestrator polls 10 fake videobridges (one aiohttp server, the 2.3.63 fixture
payload) and holds 100 rooms in the rooms gauge; the captioner, with the Korean model
loaded, holds 100 open vosk websocket streams. Each app's ``/metrics`` is then fetched
sequentially and the wall time of each request measured.

    .venv/bin/python -m bench.metrics [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from bench.harness.fake_jvb import CURRENT, FakeBridge, load_fixture
from bench.stats import percentile
from bots.captioner.app import create_app as create_captioner
from orchestrator import metrics
from orchestrator.app import create_app as create_orchestrator
from plenary.settings import load_settings

BRIDGES = 10
ROOMS = 100
STREAMS = 100


async def _scrape(session: aiohttp.ClientSession, url: str, n: int) -> dict[str, Any]:
    times: list[float] = []
    size = 0
    for _ in range(n):
        started = time.perf_counter()
        async with session.get(url) as response:
            body = await response.read()
        times.append(time.perf_counter() - started)
        size = len(body)
    return {
        "scrapes": n,
        "p50_ms": round((percentile(times, 50) or 0) * 1000, 2),
        "p95_ms": round((percentile(times, 95) or 0) * 1000, 2),
        "max_ms": round(max(times) * 1000, 2),
        "bytes": size,
        "series": sum(1 for line in body.decode().splitlines() if not line.startswith("#")),
    }


async def run(quick: bool) -> dict[str, Any]:
    n = 50 if quick else 300
    bridge = FakeBridge(load_fixture(CURRENT), paths=BRIDGES)
    await bridge.start()
    urls = [f"http://127.0.0.1:{bridge.port}/{i}/colibri/stats" for i in range(BRIDGES)]
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            orchestrator={"database": Path(tmp) / "bench.sqlite3"},
            metrics={"bridges": urls, "poll_interval": 1},
        )
        for state, count in zip(metrics.ROOM_STATES, (40, 30, 20, 10), strict=True):
            metrics.ROOMS.labels(state=state).set(count)  # 100 rooms
        orchestrator = TestServer(create_orchestrator(settings), host="127.0.0.1")
        captioner = TestServer(create_captioner(settings), host="127.0.0.1")
        await orchestrator.start_server()
        await captioner.start_server()
        # Two sessions: the streams' 100 websockets fill one session's connection pool.
        async with (
            aiohttp.ClientSession() as streams_session,
            aiohttp.ClientSession() as session,
            contextlib.AsyncExitStack() as stack,
        ):
            for i in range(STREAMS):
                ws = await stack.enter_async_context(
                    streams_session.ws_connect(
                        f"http://127.0.0.1:{captioner.port}/?room=r{i}&speaker=s{i}"
                    )
                )
                await ws.send_str('{"config": {"sample_rate": 16000}}')
                await ws.send_bytes(b"\0\0" * 1600)  # 0.1 s: a transcriber exists
                await ws.receive(timeout=60)
            await asyncio.sleep(2.5)  # the poller has polled every bridge
            o = await _scrape(session, f"http://127.0.0.1:{orchestrator.port}/metrics", n)
            c = await _scrape(session, f"http://127.0.0.1:{captioner.port}/metrics", n)
            streams = metrics_value(
                await (await session.get(f"http://127.0.0.1:{captioner.port}/metrics")).text(),
                'plenary_captioner_streams{path="vosk"}',
            )
        await captioner.close()
        await orchestrator.close()
    await bridge.stop()
    assert streams == STREAMS, streams
    return {
        "bridges": BRIDGES,
        "rooms": ROOMS,
        "streams": STREAMS,
        "orchestrator": o,
        "captioner": c,
    }


def metrics_value(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.quick)), indent=2))


if __name__ == "__main__":
    main()
