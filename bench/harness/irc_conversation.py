"""A conversation through the whole path: captions POSTed to the real app → the relay
(reading the app's SSE stream) → a real IRC server → an independent client.

Three speakers take turns, one caption every ``interval`` seconds; each caption's words
are numbered, so the observer can tell that every word arrived once and in order, and
when the last word of each caption was first seen. Used by tests/test_irc_pace.py and
``python -m bench.irc --conversation``.

    result = await converse(irc_port, folder, seconds=45.0)
    result.p95, result.missing, result.repeated, result.longest_line
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from bench.harness.ircservers import HOST, RawClient, joined, relay_running, until
from bench.harness.rooms_helpers import AUTH, room_json
from bench.harness.rooms_helpers import TOKEN as ADMIN
from bots.irc.relay import Relay
from bots.irc.source import SseCaptionSource
from orchestrator.app import create_app
from plenary.settings import IrcNetworkSettings, IrcRoomSettings, IrcSettings, load_settings

PRODUCER = "conversation-producer"
ROOM = "talk"
CHANNEL = "#talk"
SPEAKERS = ("Alice", "민준", "Bob")
# Korean is 3 bytes a character in UTF-8: lines fill up in bytes, not characters.
PHRASES = (
    "so the next item on the agenda is the budget for the accessibility work",
    "네 그 부분은 다음 회의에서 자세히 논의하면 좋겠습니다 자료를 미리 보내 드릴게요",
    "I agree and I would add that the captions must keep up with the speakers",
)


@dataclass
class Conversation:
    seconds: float
    interval: float
    lines_per_second: float
    captions: int = 0
    latencies: list[float] = field(default_factory=list)  # per caption, POST → last word
    sent_words: list[str] = field(default_factory=list)
    seen_words: list[str] = field(default_factory=list)
    longest_line: int = 0  # bytes of the longest PRIVMSG as the observer got it, CR LF too
    lines: int = 0
    packed_lines: int = 0  # lines holding more than one speaker
    connections: int = 0
    last_error: str = ""
    samples: list[tuple[float, float]] = field(default_factory=list)  # (t, p95 so far)

    @property
    def missing(self) -> int:
        return len(set(self.sent_words) - set(self.seen_words))

    @property
    def repeated(self) -> int:
        return len(self.seen_words) - len(set(self.seen_words))

    @property
    def in_order(self) -> bool:
        return self.seen_words == self.sent_words

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies) or [float("inf")]
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def p95(self) -> float:
        return self.pct(0.95)

    def summary(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "caption_interval_s": self.interval,
            "speakers": len(SPEAKERS),
            "lines_per_second": self.lines_per_second,
            "captions": self.captions,
            "words_sent": len(self.sent_words),
            "words_missing": self.missing,
            "words_repeated": self.repeated,
            "in_order": self.in_order,
            "lines": self.lines,
            "lines_with_several_speakers": self.packed_lines,
            "longest_line_bytes": self.longest_line,
            "p50_s": round(self.pct(0.5), 3),
            "p95_s": round(self.p95, 3),
            "max_s": round(max(self.latencies, default=float("inf")), 3),
            "mean_s": round(statistics.fmean(self.latencies), 3) if self.latencies else None,
            "p95_by_minute": [(round(t), round(p, 3)) for t, p in self.samples],
            "irc_connections": self.connections,
            "last_error": self.last_error or None,
        }


def spoken_words(text: str) -> list[str]:
    """The caption words of one PRIVMSG: speaker prefixes and separators left out."""
    return [w for w in text.split() if w != "·" and not (w.startswith("<") and w.endswith(">"))]


async def converse(
    irc_port: int,
    folder: Path,
    *,
    seconds: float,
    interval: float = 1.5,
    lines_per_second: float = 1.0,
    network: dict[str, Any] | None = None,
) -> Conversation:
    settings = load_settings(
        orchestrator={"database": folder / "db.sqlite3", "admin_token": ADMIN},
        captions={"producer_token": PRODUCER, "heartbeat_seconds": 1.0},
    )
    app = create_app(settings)
    server = TestServer(app, host=HOST)
    await server.start_server()
    base = f"http://{HOST}:{server.port}"
    values: dict[str, Any] = {"host": HOST, "port": irc_port, "tls": False, "nick": "relay"}
    values.update({"lines_per_second": lines_per_second, **(network or {})})
    irc = IrcSettings(
        networks={"default": IrcNetworkSettings(**values)},
        rooms=[IrcRoomSettings(room=ROOM, channel=CHANNEL)],
    )
    result = Conversation(seconds, interval, lines_per_second)
    observer = await RawClient.connect(irc_port, "watcher", CHANNEL)
    posted: dict[str, float] = {}  # last word of a caption → when it was POSTed
    seen: dict[str, float] = {}
    try:
        async with aiohttp.ClientSession() as http:
            body = room_json(ROOM, policy={"access": [{"kind": "anyone"}], "moderators": []})
            response = await http.post(f"{base}/api/v1/rooms", json=body, headers=AUTH)
            assert response.status == 201, await response.text()
            relay = Relay(irc, SseCaptionSource(base, http, reconnect_min=0.2))
            async with relay_running(relay):
                await until(lambda: joined(relay), 15, "the relay in the channel")
                await asyncio.sleep(1.0)  # the stream is open once the relay has joined
                watcher = asyncio.create_task(_watch(observer, seen))
                try:
                    await _speak(http, base, result, posted, seen)
                    last = result.sent_words[-1]
                    with contextlib.suppress(AssertionError):
                        await until(lambda: last in seen, 60, "the last caption")
                    await asyncio.sleep(2.0)  # anything repeated would arrive now
                finally:
                    watcher.cancel()
                client = relay.clients["default"]
                result.connections, result.last_error = client.connections, client.last_error
        for raw in observer.privmsg_raw:
            result.longest_line = max(result.longest_line, len(raw))
        texts = observer.texts(relay.clients["default"].nick)
        result.lines = len(texts)
        result.packed_lines = sum(1 for t in texts if " · <" in t)
        result.seen_words = [w for t in texts for w in spoken_words(t)]
        result.latencies = [seen[w] - at for w, at in posted.items() if w in seen]
    finally:
        await observer.close()
        await server.close()
    return result


async def _speak(
    http: aiohttp.ClientSession,
    base: str,
    result: Conversation,
    posted: dict[str, float],
    seen: dict[str, float],
) -> None:
    start = time.monotonic()
    index = 0
    next_sample = 60.0
    while time.monotonic() - start < result.seconds:
        await asyncio.sleep(max(0.0, start + index * result.interval - time.monotonic()))
        speaker = SPEAKERS[index % len(SPEAKERS)]
        phrase = PHRASES[index % len(PHRASES)].split()
        words = [f"{w}{index:04d}{k:02d}" for k, w in enumerate(phrase)]  # each unique
        events = [{"speaker": speaker, "text": " ".join(words), "language": "en"}]
        posted[words[-1]] = time.monotonic()
        response = await http.post(
            f"{base}/api/v1/rooms/{ROOM}/captions",
            json={"events": events},
            headers={"Authorization": f"Bearer {PRODUCER}"},
        )
        assert response.status == 202, await response.text()
        result.sent_words += words
        result.captions += 1
        index += 1
        if time.monotonic() - start >= next_sample:
            result.latencies = [seen[w] - at for w, at in posted.items() if w in seen]
            result.samples.append((time.monotonic() - start, result.p95))
            next_sample += 60.0


async def _watch(observer: RawClient, seen: dict[str, float]) -> None:
    count = 0
    while True:
        for msg in observer.privmsgs[count:]:
            now = time.monotonic()
            for word in spoken_words(msg.param(-1)):
                seen.setdefault(word, now)
        count = len(observer.privmsgs)
        await asyncio.sleep(0.005)
