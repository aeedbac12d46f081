"""A fake Jitsi videobridge for the system test: it streams a meeting's speech to a captioner.

A real videobridge opens one websocket per meeting to the URL Jicofo's ``url-template``
yields and sends every participant's Opus packets as MediaJson (docs/protocols.md §1b):
``info`` on connect, a ``start`` per audio source, ``media`` per 20 ms packet (nothing
while a participant is silent: DTX), a ``ping`` every 10 s, ``session-end`` at the end.
With ``sendBack=true`` the captioner answers with ``transcription-result`` messages,
which the bridge would relay to the participants; this fake keeps them.

    script = meeting_script([(alice, utt1), (bob, utt2)])
    bridge = StreamingBridge(url)
    await bridge.run(script)          # real pace; bridge.finals() afterwards
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from bench.harness.audio import read_pcm
from bench.harness.opus_frames import RATE, FakeBridge
from plenary.corpus import Utterance

LEAD_S = 0.5  # silence before the first utterance
GAP_S = 1.2  # silence after each utterance (the captioner finalizes after ~0.4 s)
PING_EVERY_S = 10.0


@dataclass(frozen=True)
class Turn:
    """One utterance spoken by one participant (endpoint id) at ``start`` seconds."""

    endpoint: str
    utterance: Utterance
    start: float
    end: float


@dataclass
class Script:
    """Every frame of a meeting in sending order, with the second at which it is due."""

    frames: list[tuple[float, str]]
    turns: list[Turn]

    @property
    def duration(self) -> float:
        return self.frames[-1][0] if self.frames else 0.0


def meeting_script(turns: list[tuple[str, Utterance]]) -> Script:
    """Participants taking turns; each one's audio is its own Opus stream with DTX silence.

    Each participant's track covers the whole meeting (silent while the others speak), so
    its RTP timestamps advance through the silences the way a real sender's do; the DTX
    of ``bench.harness.opus_frames`` keeps silent packets off the wire. The frames of all tracks
    are merged by time and numbered as one socket's ``sequenceNumber``.
    """
    builder = FakeBridge()
    placed: list[Turn] = []
    clock = LEAD_S
    pcm_by_endpoint: dict[str, list[tuple[float, bytes]]] = {}
    for endpoint, utterance in turns:
        pcm, _ = read_pcm(utterance.path, RATE)
        seconds = len(pcm) / 2 / RATE
        placed.append(Turn(endpoint, utterance, clock, clock + seconds))
        pcm_by_endpoint.setdefault(endpoint, []).append((clock, pcm))
        clock += seconds + GAP_S
    total = int(clock * RATE)
    header = [json.dumps({"event": "info", "application": "jitsi-videobridge",
                          "version": "2.3.63", "region": ""})]  # fmt: skip
    merged: list[tuple[float, str]] = []
    for endpoint, pieces in pcm_by_endpoint.items():
        track = bytearray(total * 2)
        for at, pcm in pieces:
            offset = int(at * RATE) * 2
            track[offset : offset + len(pcm)] = pcm
        tag = f"{endpoint}-a0"
        header.append(builder.start(tag))
        merged += builder.speech(tag, bytes(track))
    merged.sort(key=lambda item: item[0])
    pings = [(t * PING_EVERY_S, json.dumps({"event": "ping", "id": t}))
             for t in range(1, int(clock // PING_EVERY_S) + 1)]  # fmt: skip
    timeline = sorted(merged + pings, key=lambda item: item[0])
    frames: list[tuple[float, str]] = []
    seq = 0
    for at, frame in [(0.0, frame) for frame in header] + timeline:
        data = json.loads(frame)
        if "sequenceNumber" in data:
            seq += 1
            data["sequenceNumber"] = str(seq)
        frames.append((at, json.dumps(data)))
    frames.append((clock, json.dumps({"event": "session-end"})))
    return Script(frames, placed)


@dataclass
class StreamingBridge:
    """One meeting's transcription socket, as the videobridge opens it."""

    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    sent_frames: int = 0
    close_code: int | None = None

    async def run(
        self,
        script: Script,
        *,
        on_progress: Callable[[float], Any] | None = None,
        linger: float = 15.0,
    ) -> None:
        """Send the script at real pace; after ``session-end`` read results for up to
        ``linger`` seconds, until the captioner closes the socket."""
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(self.url, heartbeat=None, max_msg_size=0) as ws,
        ):
            reader = asyncio.create_task(self._read(ws))
            begin = time.monotonic()
            try:
                for at, frame in script.frames:
                    delay = begin + at - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    await ws.send_str(frame)
                    self.sent_frames += 1
                    if on_progress is not None:
                        on_progress(at)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(reader), linger)
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
                self.close_code = ws.close_code

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.received.append(json.loads(msg.data))

    def results(self) -> list[dict[str, Any]]:
        return [m for m in self.received if m.get("type") == "transcription-result"]

    def finals(self) -> list[dict[str, Any]]:
        return [m for m in self.results() if m.get("is_interim") is False]

    def pongs(self) -> list[int]:
        return [int(m["id"]) for m in self.received if m.get("event") == "pong"]


# The videobridge's private HTTP server: /colibri/stats (the legacy JSON shim Plenary's
# poller reads) and /metrics (Prometheus text, namespace jitsi_jvb, docs/protocols.md §5).
METRICS = (
    # (name, type, help, colibri stats key)
    ("jitsi_jvb_conferences", "gauge", "Current number of conferences.", "conferences"),
    ("jitsi_jvb_endpoints", "gauge", "Current number of endpoints.", "endpoints"),
    ("jitsi_jvb_stress", "gauge", "Current stress (0-1).", "stress_level"),
    ("jitsi_jvb_healthy", "gauge", "Whether the bridge is healthy.", "healthy"),
    ("jitsi_jvb_threads", "gauge", "Current number of JVM threads.", "threads"),
    ("jitsi_jvb_bytes_received_total", "counter", "Bytes received.", "total_bytes_received"),
    ("jitsi_jvb_bytes_sent_total", "counter", "Bytes sent.", "total_bytes_sent"),
)


def metrics_text(stats: dict[str, Any]) -> str:
    lines: list[str] = []
    for name, kind, text, key in METRICS:
        value = float(stats.get(key) or 0)
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name} {value!r}"]
    return "\n".join(lines) + "\n"


class BridgeHttp:
    """The videobridge's private REST server on 127.0.0.1 (``stats`` as /colibri/stats)."""

    def __init__(self, stats: dict[str, Any]) -> None:
        self.stats = stats
        self.requests: dict[str, int] = {"/colibri/stats": 0, "/metrics": 0}
        self._runner: web.AppRunner | None = None
        app = web.Application()
        app.router.add_get("/colibri/stats", self._colibri)
        app.router.add_get("/metrics", self._metrics)
        self._app = app

    async def _colibri(self, request: web.Request) -> web.Response:
        self.requests["/colibri/stats"] += 1
        return web.json_response(self.stats)

    async def _metrics(self, request: web.Request) -> web.Response:
        self.requests["/metrics"] += 1
        return web.Response(
            text=metrics_text(self.stats), content_type="text/plain", charset="utf-8",
            headers={"X-Content-Type-Options": "nosniff"},
        )  # fmt: skip

    async def start(self, port: int) -> None:
        self._runner = web.AppRunner(self._app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
