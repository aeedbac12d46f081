"""Correction fan-out: a correction accepted → seen by every one of many SSE subscribers.

    .venv/bin/python -m bench.corrections            # 2,000 subscribers, 20 corrections
    .venv/bin/python -m bench.corrections --quick    # 200 subscribers, 5 corrections

The orchestrator runs as its own process (bench.sse's ``Server``: ``plenary serve
--no-captioner``, a temp database). One caption is posted; then each correction is
POSTed with the admin token (docs/corrections.md) and timed from the moment its POST
was answered (accepted: stored and handed to the hub) to its ``event: correction``
arriving at each subscriber. The time from sending the POST is reported too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.sse import ROOM, TOKEN, Server, _pct
from orchestrator.settings import PROJECT_ROOT

ADMIN = "bench-admin-token"


async def fan_out(server: Server, subscribers: int, corrections: int, interval: float) -> Any:
    seen: dict[int, list[float]] = {}  # position → arrival times of its correction
    connected = 0
    all_in = asyncio.Event()
    done = asyncio.Event()
    last_pos = 0

    async def subscriber(http: aiohttp.ClientSession) -> None:
        nonlocal connected
        async with http.get(f"{server.url}/r/{ROOM}/captions/stream") as r:
            first, position = True, 0
            async for raw in r.content:
                if first:
                    first = False
                    connected += 1
                    if connected == subscribers:
                        all_in.set()
                if raw.startswith(b"id: "):
                    position = int(raw[4:])
                elif raw.startswith(b"event: correction"):
                    seen.setdefault(position, []).append(time.monotonic())
                    if position == last_pos and len(seen[position]) == subscribers:
                        done.set()
                    if position == last_pos:
                        return

    async with aiohttp.ClientSession() as producer:
        r = await producer.post(
            f"{server.url}/api/v1/rooms/{ROOM}/captions",
            json={"speaker": "김민지", "text": "발표자는 김 교수입니다."},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        seq = (await r.json())["accepted"][0]
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    sent: dict[int, float] = {}
    accepted: dict[int, float] = {}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        tasks = [asyncio.create_task(subscriber(http)) for _ in range(subscribers)]
        await asyncio.wait_for(all_in.wait(), 120)
        await asyncio.sleep(1.0)  # every handler past its subscribe
        last_pos = 1 << 62  # until the last correction's position is known
        async with aiohttp.ClientSession() as captioner:
            for n in range(corrections):
                start = time.monotonic()
                async with captioner.post(
                    f"{server.url}/api/v1/rooms/{ROOM}/captions/{seq}/corrections",
                    json={"text": f"발표자는 金 교수입니다 ({n})."},
                    headers={"Authorization": f"Bearer {ADMIN}"},
                ) as r:
                    assert r.status == 200, await r.text()
                    pos = (await r.json())["pos"]
                accepted[pos] = time.monotonic()
                sent[pos] = start
                await asyncio.sleep(interval)
        last_pos = max(sent)
        if len(seen.get(last_pos, ())) == subscribers:
            done.set()
        await asyncio.wait_for(done.wait(), 120)
        for task in tasks:  # those that saw the last one before it was known as the last
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    from_accept = sorted(max(0.0, t - accepted[p]) * 1000 for p in sent for t in seen[p])
    last = sorted((max(seen[p]) - accepted[p]) * 1000 for p in sent)
    from_send = sorted((t - sent[p]) * 1000 for p in sent for t in seen[p])
    return {
        "subscribers": subscribers,
        "corrections": corrections,
        "all_delivered_once": all(len(seen.get(p, ())) == subscribers for p in sent),
        "accepted_to_visible_ms": {
            "p50": round(statistics.median(from_accept), 1),
            "p95": round(_pct(from_accept, 95), 1),
            "max": round(from_accept[-1], 1),
        },
        "accepted_to_last_subscriber_ms": {
            "p50": round(statistics.median(last), 1),
            "p95": round(_pct(last, 95), 1),
        },
        "post_sent_to_visible_ms": {
            "p50": round(statistics.median(from_send), 1),
            "p95": round(_pct(from_send, 95), 1),
        },
    }


async def run(quick: bool) -> dict[str, Any]:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    subscribers, corrections = (200, 5) if quick else (2000, 20)
    os.environ["PLENARY_ORCHESTRATOR__ADMIN_TOKEN"] = ADMIN
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp))
        try:
            async with aiohttp.ClientSession() as http:
                await server.ready(http)
            return {"fan_out": await fan_out(server, subscribers, corrections, interval=0.5)}
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.quick)), indent=2, ensure_ascii=False))


if __name__ == "__main__":
    os.chdir(PROJECT_ROOT)
    main()
