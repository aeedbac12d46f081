"""Correction fan-out: a correction accepted → seen by every one of many SSE subscribers.

    .venv/bin/python -m bench.corrections            # 2,000 subscribers, 20 corrections
    .venv/bin/python -m bench.corrections --quick    # 200 subscribers, 5 corrections
    .venv/bin/python -m bench.corrections --irc 30   # correction → IRC line, 30 of them

The orchestrator runs as its own process (bench.sse's ``Server``: ``plenary serve
--no-captioner``, a temp database). One caption is posted; then each correction is
POSTed with the admin token (docs/corrections.md) and timed from the moment its POST
was answered (accepted: stored and handed to the hub) to its ``event: correction``
arriving at each subscriber. The time from sending the POST is reported too.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
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
from plenary.settings import PROJECT_ROOT

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


def _said(observer: Any, marker: str) -> bool:
    return any(
        t.startswith("* correction:") and t.endswith(marker) for t in observer.texts("relay")
    )


async def _until(predicate: Any, limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the line did not come")
        await asyncio.sleep(0.005)


async def irc(count: int, spacing: float = 1.5) -> dict[str, Any]:
    """Correction accepted → its line seen by an independent client on ngircd, through the
    real app (in this process), the relay's SSE source and its flood control (one line a
    second after a burst of 4: corrections are spaced so the bucket is not the figure)."""
    from aiohttp.test_utils import TestServer

    from bench.harness.ircservers import HOST, RawClient, relay_running, start_server
    from bots.irc.relay import Relay
    from bots.irc.source import SseCaptionSource
    from orchestrator.app import create_app
    from plenary.settings import (
        IrcNetworkSettings,
        IrcRoomSettings,
        IrcSettings,
        load_settings,
    )

    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            orchestrator={"database": Path(tmp) / "db.sqlite3", "admin_token": ADMIN},
            captions={"producer_token": TOKEN, "heartbeat_seconds": 1.0},
        )
        server = TestServer(create_app(settings), host=HOST)
        await server.start_server()
        base = f"http://{HOST}:{server.port}"
        admin = {"Authorization": f"Bearer {ADMIN}"}
        room = {"slug": ROOM, "title": "bench", "languages": ["ko"],
                "schedule": {"start": "2030-01-01T10:00", "end": "2030-01-01T11:00",
                             "timezone": "UTC"},
                "policy": {"access": [{"kind": "anyone"}]},
                "transcript_retention_days": 1}  # fmt: skip
        seen: dict[int, float] = {}
        accepted: dict[int, float] = {}
        with start_server("ngircd", Path(tmp)) as ircd:
            network = IrcNetworkSettings(host=HOST, port=ircd.port, tls=False, nick="relay")
            channel = IrcRoomSettings(room=ROOM, channel="#bench")
            irc_settings = IrcSettings(networks={"default": network}, rooms=[channel])
            observer = await RawClient.connect(ircd.port, "watcher", "#bench")
            async with aiohttp.ClientSession(base) as http:
                assert (await http.post("/api/v1/rooms", json=room, headers=admin)).status == 201
                r = await http.post(f"/api/v1/rooms/{ROOM}/captions",
                                    json={"speaker": "김민지", "text": "발표자는 김 교수입니다."},
                                    headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
                seq = (await r.json())["accepted"][0]
                relay = Relay(irc_settings, SseCaptionSource(base, http, replay=True))
                async with relay_running(relay):
                    await _until(lambda: relay.delivered.get(ROOM) == seq)
                    for n in range(count):
                        r = await http.post(
                            f"/api/v1/rooms/{ROOM}/captions/{seq}/corrections",
                            json={"text": f"발표자는 金 교수입니다 ({n})."}, headers=admin,
                        )  # fmt: skip
                        accepted[n] = time.monotonic()
                        assert r.status == 200, await r.text()
                        marker = f"({n})."
                        await _until(functools.partial(_said, observer, marker))
                        seen[n] = time.monotonic()
                        await asyncio.sleep(spacing)
                lines = [t for t in observer.texts("relay") if t.startswith("* correction:")]
            await observer.close()
        await server.close()
    ms = sorted((seen[n] - accepted[n]) * 1000 for n in seen)
    return {
        "corrections": count,
        "lines": len(lines),
        "accepted_to_irc_line_ms": {
            "p50": round(statistics.median(ms), 1),
            "p95": round(_pct(ms, 95), 1),
            "max": round(ms[-1], 1),
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
    parser.add_argument("--irc", type=int, metavar="N", help="N corrections → IRC instead")
    parser.add_argument("--spacing", type=float, default=1.5, help="seconds between (--irc)")
    args = parser.parse_args()
    result = asyncio.run(irc(args.irc, args.spacing) if args.irc else run(args.quick))
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    os.chdir(PROJECT_ROOT)
    main()
