"""IRC relay benchmark against a real ngircd on loopback.

- latency: caption event published → line seen by another IRC client (p50/p95), with
  1 room at a steady pace, and 20 rooms on one connection all speaking at once;
- sustained: lines a second that reach the channel with the bot configured for 1, 2
  and 4 lines a second, and whether the server disconnected it (Excess Flood);
- conversation: captions POSTed to the real app every 1.5 s by 3 alternating speakers,
  relayed at 1 line a second: POST → line seen p50/p95 (goal p95 ≤ 5 s) per minute and
  overall, and words lost, repeated or out of order (goal 0). 10 minutes by default.

    .venv/bin/python -m bench.irc [--quick]
    .venv/bin/python -m bench.irc --conversation 600   # only the conversation, seconds
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness.caption_feed import BusCaptionSource, caption_bus
from bench.harness.irc_conversation import converse
from bench.harness.ircservers import HOST, RawClient, start_server
from bots.irc.relay import Relay
from plenary.events import CaptionEvent
from plenary.settings import IrcNetworkSettings, IrcRoomSettings, IrcSettings


def _settings(port: int, rooms: int, **network: Any) -> IrcSettings:
    values: dict[str, Any] = {"host": HOST, "port": port, "tls": False, "nick": "relay"}
    values.update(network)
    return IrcSettings(
        networks={"default": IrcNetworkSettings(**values)},
        rooms=[IrcRoomSettings(room=f"r{i}", channel=f"#r{i}") for i in range(rooms)],
    )


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


async def _wait(predicate: Any, limit: float) -> None:
    deadline = time.monotonic() + limit
    while not predicate() and time.monotonic() < deadline:  # noqa: ASYNC110 (polling a list)
        await asyncio.sleep(0.01)


class _Run:
    def __init__(self, port: int, rooms: int, **network: Any) -> None:
        self.settings = _settings(port, rooms, **network)
        self.bus = caption_bus()
        self.port = port
        self.rooms = rooms

    async def __aenter__(self) -> _Run:
        self.observer = await RawClient.connect(self.port, "watcher")
        for i in range(self.rooms):
            await self.observer.join(f"#r{i}")
        self._source = BusCaptionSource(self.bus)
        await self._source.__aenter__()
        self.relay = Relay(self.settings, self._source)
        self._task = asyncio.create_task(self.relay.run())
        client = self.relay.clients["default"]
        await _wait(lambda: all(c.joined for c in client.channels.values()), 30)
        await asyncio.sleep(1.0)  # let the token bucket fill up again after joining
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._source.__aexit__(None, None, None)
        await self.observer.close()

    def publish(self, room: str, speaker: str, text: str) -> float:
        event = CaptionEvent(room, speaker, "en", text, True, 0.0, 1.0, text)
        self.bus.publish(event)
        return time.monotonic()

    def seen_at(self) -> dict[str, float]:
        """Caption token → when the observer received it (token is the last word)."""
        return self._seen

    def watch(self) -> None:
        self._seen: dict[str, float] = {}
        self._count = 0

        async def loop() -> None:
            while True:
                for msg in self.observer.privmsgs[self._count :]:
                    for word in msg.param(-1).split():
                        self._seen.setdefault(word, time.monotonic())
                self._count = len(self.observer.privmsgs)
                await asyncio.sleep(0.002)

        self._watcher = asyncio.create_task(loop())


async def latency(port: int, rooms: int, captions: int, pace: float) -> dict[str, Any]:
    async with _Run(port, rooms) as run:
        run.watch()
        sent: dict[str, float] = {}
        for i in range(captions):
            token = f"t{i:04d}"
            sent[token] = run.publish(f"r{i % rooms}", "Alice", f"caption {token}")
            if pace:
                await asyncio.sleep(pace)
        await _wait(lambda: len(set(sent) & set(run.seen_at())) == len(sent), 120)
        seen = run.seen_at()
        delays = [seen[t] - sent[t] for t in sent if t in seen]
        return {
            "rooms": rooms,
            "captions": captions,
            "pace_s": pace,
            "received": len(delays),
            "p50_s": _pct(delays, 0.5),
            "p95_s": _pct(delays, 0.95),
            "max_s": round(max(delays), 3),
            "mean_s": round(statistics.fmean(delays), 3),
        }


async def sustained(port: int, rate: float, seconds: float) -> dict[str, Any]:
    async with _Run(port, 1, lines_per_second=rate, burst=4) as run:
        client = run.relay.clients["default"]
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < seconds:
            # Two speakers alternating, captions of 300 bytes without a space: none is
            # packed behind another, every caption is one line.
            run.publish("r0", "Alice" if i % 2 else "Bob", f"line-{i:05d}-" + "x" * 300)
            i += 1
            await asyncio.sleep(0.05)
        await asyncio.sleep(2.0)
        got = len(run.observer.privmsgs)
        return {
            "configured_lines_per_s": rate,
            "seconds": seconds,
            "captions_published": i,
            "lines_received": got,
            "received_lines_per_s": round(got / (seconds + 2.0), 2),
            "reconnects": client.connections - 1,
            "disconnect_reason": client.last_error or None,
            "backlog_at_end": run.relay.backlog(),
            "skipped_lines": run.relay.queues["r0"].skipped_lines,
        }


async def conversation(seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder, start_server("ngircd", Path(folder)) as srv:
        result = await converse(srv.port, Path(folder), seconds=seconds, lines_per_second=1.0)
    return result.summary()


async def run(quick: bool, conversation_seconds: float | None = None) -> dict[str, Any]:
    results: dict[str, Any] = {"server": "ngircd (Debian 26.1), loopback", "quick": quick}
    seconds = conversation_seconds or (60.0 if quick else 600.0)
    results["conversation"] = await conversation(seconds)
    if conversation_seconds:
        return results
    with tempfile.TemporaryDirectory() as folder, start_server("ngircd", Path(folder)) as srv:
        results["latency_1_room_paced"] = await latency(srv.port, 1, 8 if quick else 30, pace=2.1)
        results["latency_20_rooms_at_once"] = await latency(srv.port, 20, 20, pace=0.0)
        results["latency_20_rooms_paced"] = await latency(
            srv.port, 20, 10 if quick else 40, pace=2.1
        )
        results["sustained"] = [
            await sustained(srv.port, rate, 15.0 if quick else 60.0) for rate in (1.0, 2.0, 4.0)
        ]
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer captions, shorter runs")
    parser.add_argument(
        "--conversation",
        type=float,
        metavar="SECONDS",
        help="run only the conversation benchmark, for this long (default in a full run: 600)",
    )
    args = parser.parse_args()
    results = asyncio.run(run(args.quick, args.conversation))
    print(json.dumps(results, indent=2, ensure_ascii=False))
