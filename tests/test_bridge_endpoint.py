"""The /transcribe endpoint end to end: a real bridge capture, Korean speech as Opus, bad input,
send-back flags, resume. Real Korean model, in-process app."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from bench.harness.audio import read_pcm
from bench.harness.opus_frames import FakeBridge, ping
from bots.captioner.app import caption_bus, create_app
from bots.captioner.bridge_ws import bridge_sessions_key
from bots.captioner.engine import Engine
from bots.captioner.stream import StreamTranscriber
from plenary.corpus import Utterance
from plenary.events import CaptionEvent
from plenary.fanout import FanOut
from plenary.scoring import cer
from plenary.settings import Settings
from tests.test_mediajson import dump_lines

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
RESULT_KEYS = {
    "event", "type", "message_id", "is_interim", "transcript", "participant", "timestamp",
    "language",
}  # fmt: skip


class Bridge:
    """A test bridge: one websocket, every frame it receives kept with its arrival time."""

    def __init__(self, client: TestClient[Any, Any], bus: FanOut[CaptionEvent]) -> None:
        self.client = client
        self.bus = bus
        self.events: list[CaptionEvent] = []
        self._sub = bus.subscribe(maxsize=10_000)
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.ws: Any = None
        self.reader: asyncio.Task[None] | None = None
        self._collector = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        async for event in self._sub:
            self.events.append(event)

    async def connect(self, query: str, *, read: bool = True) -> None:
        self.ws = await self.client.ws_connect(f"/transcribe?{query}")
        if read:
            self.reader = asyncio.create_task(self._read(self.ws))

    async def _read(self, ws: Any) -> None:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                self.received.append((time.monotonic(), json.loads(msg.data)))

    async def send(self, frames: list[tuple[float, str]], pace: float = 1.0) -> None:
        """Send (offset seconds, frame) pairs, ``pace`` times faster than real time."""
        begin = time.monotonic()
        for offset, frame in frames:
            delay = begin + offset / pace - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.ws.send_str(frame)

    def results(self, final: bool | None = None) -> list[dict[str, Any]]:
        out = [m for _, m in self.received if m.get("type") == "transcription-result"]
        return [m for m in out if final is None or m["is_interim"] is not final]

    async def wait_for(self, check: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            await asyncio.wait([self.reader], timeout=5)
        self._collector.cancel()
        self._sub.close()


@pytest.fixture
def open_bridge(
    aiohttp_client: ClientFactory, settings: Settings, engine: Engine
) -> Callable[..., Awaitable[Bridge]]:
    async def open_(**captioner: Any) -> Bridge:
        custom = settings.model_copy(
            update={"captioner": settings.captioner.model_copy(update=captioner)}
        )
        bus = caption_bus()
        client = await aiohttp_client(create_app(custom, bus=bus, engine=engine))
        return Bridge(client, bus)

    return open_


def speech(utterances: list[Utterance], gap_s: float = 1.0) -> bytes:
    """Utterances at 48 kHz, each followed by ``gap_s`` of silence."""
    gap = b"\0" * int(48000 * gap_s) * 2
    return b"".join(read_pcm(u.path, 48000)[0] + gap for u in utterances)


def joined(results: list[dict[str, Any]], endpoint: str | None = None) -> str:
    return " ".join(
        r["transcript"][0]["text"]
        for r in results
        if endpoint is None or r["participant"]["id"] == endpoint
    )


# --- a real videobridge capture ---


async def test_replay_of_a_real_bridge_capture_at_recorded_pace(
    open_bridge: Callable[..., Awaitable[Bridge]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two English speakers through the Korean model: assert on audio level, shapes, pongs."""
    levels: dict[str, list[float]] = defaultdict(list)
    feed = StreamTranscriber.feed

    async def recording(self: StreamTranscriber, pcm: bytes) -> Any:
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
        for window in np.array_split(samples, max(1, len(samples) // 960)):
            levels[self.speaker].append(float(np.sqrt(np.mean(window**2))) if len(window) else 0)
        return await feed(self, pcm)

    monkeypatch.setattr(StreamTranscriber, "feed", recording)
    lines = dump_lines()
    t0 = lines[0]["timestamp"]
    frames = [((line["timestamp"] - t0) / 1000, line["data"]) for line in lines]
    duration = frames[-1][0]
    pings = [(5.0 * n, ping(n)) for n in range(1, int(duration // 5) + 1)]
    bridge = await open_bridge()
    await bridge.connect("sessionId=replay&sendBack=true&sendBackInterim=true&lang=en-US")
    sent_at: dict[int, float] = {}
    begin = time.monotonic()
    for offset, frame in sorted(frames + pings, key=lambda f: f[0]):
        delay = begin + offset - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if '"ping"' in frame[:20]:
            sent_at[json.loads(frame)["id"]] = time.monotonic()
        await bridge.ws.send_str(frame)
    await bridge.wait_for(lambda: len([m for _, m in bridge.received if m.get("event") == "pong"])
                          == len(sent_at), 5)  # fmt: skip
    await asyncio.sleep(1.5)  # the last finals
    pongs = {m["id"]: at for at, m in bridge.received if m.get("event") == "pong"}
    assert set(pongs) == set(sent_at)
    assert max(pongs[i] - sent_at[i] for i in sent_at) < 3.0
    # Both participants' audio decodes to speech level (not silence, not noise bursts).
    assert set(levels) == {"Speaker 1", "Speaker 2"}
    for speaker, rms in levels.items():
        loud = sum(1 for r in rms if 20 * np.log10(max(r, 1) / 32768) > -40)
        assert len(rms) * 0.02 > 5, speaker  # seconds of audio decoded
        assert loud / len(rms) > 0.3, f"{speaker}: {loud} of {len(rms)} windows at speech level"
    # Results come back in the bridge's format, for both endpoints.
    results = bridge.results()
    assert results and all(set(r) >= RESULT_KEYS for r in results)
    assert {r["participant"]["id"] for r in results} == {"aaaaaaaa", "bbbbbbbb"}
    assert all(r["event"] == r["type"] == "transcription-result" for r in results)
    assert {r["language"] for r in results} == {"ko"}  # no English model: the default, said so
    finals = bridge.results(final=True)
    assert finals and all("confidence" in r["transcript"][0] for r in finals)
    final_ids = {r["message_id"] for r in finals}
    assert any(r["message_id"] in final_ids for r in bridge.results(final=False))
    await bridge.close()


# --- Korean speech as Opus ---


async def test_korean_speech_as_opus_matches_the_pcm_path(
    open_bridge: Callable[..., Awaitable[Bridge]], engine: Engine, ko_corpus: list[Utterance]
) -> None:
    # Ten utterances (about 150 characters): with fewer, one character is already 0.01 CER.
    utterances = ko_corpus[0:30:3]
    pcm = speech(utterances)
    reference = " ".join(u.text for u in utterances)
    # The vosk path: the same audio as PCM straight into a transcriber.
    async with engine.open_stream("file") as lease:
        stream = lease.open_transcriber(sample_rate=48000, language="ko", room="r", speaker="pcm")
        finals = []
        for i in range(0, len(pcm), 9600):
            finals += (await stream.feed(pcm[i : i + 9600])).finals
        finals += (await stream.flush()).finals
    pcm_cer = cer([(reference, " ".join(f.event.text for f in finals))])
    # The bridge path: Opus, DTX in silence, one packet lost in the second utterance.
    fake = FakeBridge()
    first_len = len(read_pcm(utterances[0].path, 48000)[0]) // 1920
    frames = [(0.0, fake.start("5f3a9c1e-a0"))]
    frames += fake.speech("5f3a9c1e-a0", pcm, lose=frozenset({first_len + 50 + 40}))
    bridge = await open_bridge()
    await bridge.connect("sessionId=korean&sendBack=true")
    await bridge.send(frames, pace=4.0)
    # The last final: on a busy machine decoding may trail the paced sending, so wait
    # until no new final has come for 1.5 s (at most 30 s) rather than a fixed time.
    seen = -1
    for _ in range(20):
        await asyncio.sleep(1.5)
        if len(bridge.results(final=True)) == seen:
            break
        seen = len(bridge.results(final=True))
    text = joined(bridge.results(final=True))
    bridge_cer = cer([(reference, text)])
    # Opus at 32 kbps may do better than the raw recordings (its high-pass filter drops
    # hum); the requirement is that it does no worse.
    assert bridge_cer <= pcm_cer + 0.02, (bridge_cer, pcm_cer, text)
    assert not bridge.results(final=False)  # sendBackInterim was not asked for
    session = bridge.client.app[bridge_sessions_key].sessions["korean"]
    assert session.participants["5f3a9c1e-a0"].jitter.lost == 1
    assert session.participants["5f3a9c1e-a0"].decoder.concealed == 1
    await bridge.close()


async def test_send_back_flags(
    open_bridge: Callable[..., Awaitable[Bridge]], ko_corpus: list[Utterance]
) -> None:
    bridge = await open_bridge()
    pcm = speech([ko_corpus[2]], gap_s=0.6)
    bridges = {}
    for name, query in (
        ("interim", "sendBack=true&sendBackInterim=true"),
        ("final", "sendBack=true"),
        ("none", "sendBackInterim=true"),
    ):
        b = Bridge(bridge.client, bridge.bus)
        await b.connect(f"sessionId=flags-{name}&{query}")
        fake = FakeBridge()
        bridges[name] = (b, [(0.0, fake.start("ab12-a0")), *fake.speech("ab12-a0", pcm)])
    await asyncio.gather(*(b.send(frames, pace=2.0) for b, frames in bridges.values()))
    interim, final, none = (bridges[n][0] for n in ("interim", "final", "none"))
    await interim.wait_for(lambda: bool(interim.results(final=True)))
    await final.wait_for(lambda: bool(final.results(final=True)))
    await asyncio.sleep(1.0)
    assert interim.results(final=False), "no interim results with sendBackInterim=true"
    final_id = interim.results(final=True)[0]["message_id"]
    assert any(r["message_id"] == final_id for r in interim.results(final=False))
    assert not final.results(final=False)
    assert none.results() == []
    # Every session's captions still reach Plenary's own consumers, under the meeting id
    # (the URL names no room) and the speaker's endpoint id.
    finals = [e for e in bridge.events if e.is_final]
    assert {"flags-interim", "flags-final", "flags-none"} <= {e.meeting_id for e in finals}
    assert all(e.room == "" and e.endpoint for e in finals)
    for b, _ in bridges.values():
        await b.close()
    await bridge.close()


# --- bad input ---


async def test_bad_input_is_refused_and_the_good_speaker_keeps_going(
    open_bridge: Callable[..., Awaitable[Bridge]], ko_corpus: list[Utterance]
) -> None:
    bridge = await open_bridge(bridge_max_sources=20)
    await bridge.connect("sessionId=bad&sendBack=true")
    fake = FakeBridge()
    good = fake.speech("900d-a0", speech([ko_corpus[7]], gap_s=0.6))
    fake.start("ba5e-a0")
    fake.start("9a7b-a0")
    garbage = [
        (0.0, "not json"),
        (0.0, '{"event":"hello","x":1}'),
        (0.0, fake.media("ba5e-a0", "!!!not base64")),
        (0.0, fake.start("4ed0-a0", encoding="red")),
        (0.0, fake.media("4ed0-a0", "eAvkwTbsxY2MSUaZBMWq7ZLnY0o6GJjuYstg/2wbKQA=")),
        *((0.0, fake.media("9a7b-a0", "/////w==")) for _ in range(60)),  # garbage Opus
        (0.0, fake.media("9a7b-a0", "eA")),  # truncated base64
        (0.0, json.dumps({"event": "media", "media": {"tag": "n0-start", "chunk": "1",
                                                      "timestamp": "0", "payload": "eA=="}})),
    ]  # fmt: skip
    # 1,000 tags in one session: the first ones are taken, the rest refused.
    many = [
        (0.0, json.dumps({"event": "media", "media": {"tag": f"{n:08x}-a0", "payload": "+A=="}}))
        for n in range(1000)
    ]
    await bridge.ws.send_bytes(b"\x00\x01")
    frames = [(0.0, fake.start("900d-a0")), *garbage, *many] + [(t + 0.5, f) for t, f in good]
    await bridge.send(frames, pace=2.0)
    await bridge.ws.send_str(ping(77))
    await bridge.wait_for(lambda: any(m.get("id") == 77 for _, m in bridge.received), 5)
    await bridge.wait_for(lambda: bool(joined(bridge.results(final=True), "900d")))
    await asyncio.sleep(1.5)  # the utterance's last final
    session = bridge.client.app[bridge_sessions_key].sessions["bad"]
    assert len(session.participants) <= 20
    assert "encoding 'red'" in session.refused["4ed0-a0"]
    assert "undecodable" in session.refused["9a7b-a0"]
    assert "bridge_max_sources" in session.refused["000003e7-a0"]
    assert "900d-a0" in session.participants and "n0-start" in session.participants
    text = joined(bridge.results(final=True), "900d")
    assert cer([(ko_corpus[7].text, text)]) < 0.3  # 0.06 through PCM
    # A 10 MB frame: the socket is closed (1009), the session waits for the bridge to return.
    with contextlib.suppress(ConnectionError):  # the server hangs up mid-frame
        await bridge.ws.send_str("x" * 10_000_000)
    await asyncio.wait_for(bridge.reader, 10)
    assert bridge.ws.close_code in (1009, 1006)
    await bridge.connect("sessionId=bad&sendBack=true")
    more = fake.speech("900d-a0", speech([ko_corpus[6]], gap_s=0.6))
    before = len(bridge.results(final=True))
    await bridge.send(more, pace=2.0)
    await bridge.wait_for(lambda: len(bridge.results(final=True)) > before)
    assert bridge.client.app[bridge_sessions_key].sessions["bad"] is session
    await bridge.close()


async def test_a_silent_or_unreading_bridge_is_dropped_and_the_session_expires(
    open_bridge: Callable[..., Awaitable[Bridge]], engine: Engine, ko_corpus: list[Utterance]
) -> None:
    bridge = await open_bridge(idle_timeout=1.0, bridge_resume_seconds=1.0)
    streams = engine.active_streams
    await bridge.connect("sessionId=quiet&sendBack=true", read=False)  # never reads
    fake = FakeBridge()
    frames = fake.speech("ab12-a0", speech([ko_corpus[6]], 0.6))
    await bridge.send([(0.0, fake.start("ab12-a0")), *frames], pace=2.0)
    await bridge.wait_for(lambda: any(e.is_final for e in bridge.events))  # captions still flow
    registry = bridge.client.app[bridge_sessions_key]
    assert engine.active_streams == streams + 1
    msg = await bridge.ws.receive(timeout=5)  # then nothing for a second: closed as idle
    while msg.type == WSMsgType.TEXT:
        msg = await bridge.ws.receive(timeout=5)
    assert bridge.ws.close_code == 1008
    assert "quiet" in registry.sessions  # kept for a reconnect…
    await bridge.wait_for(lambda: "quiet" not in registry.sessions, 5)  # …then expired
    await bridge.wait_for(lambda: engine.active_streams == streams, 5)
    await bridge.close()


# --- resume ---


async def test_reconnect_keeps_labels_and_loses_no_words(
    open_bridge: Callable[..., Awaitable[Bridge]], ko_corpus: list[Utterance]
) -> None:
    bridge = await open_bridge()
    query = "sessionId=resume&sendBack=true"
    await bridge.connect(query)
    fake = FakeBridge()
    first = ko_corpus[7]
    await bridge.send(
        [(0.0, fake.start("aaaa-a0")), (0.0, fake.start("bbbb-a0")),
         *fake.speech("aaaa-a0", speech([first], gap_s=0.0))], pace=2.0,
    )  # fmt: skip
    await bridge.ws.close()  # dropped before the final was sent
    await asyncio.sleep(1.0)  # the bridge's first backoff
    await bridge.connect(query)
    await bridge.wait_for(lambda: bool(bridge.results(final=True)))
    assert cer([(first.text, joined(bridge.results(final=True)))]) < 0.5
    second = ko_corpus[9]
    await bridge.send(fake.speech("bbbb-a0", speech([second], gap_s=0.6)), pace=2.0)
    await bridge.wait_for(lambda: bool(joined(bridge.results(final=True), "bbbb")))
    speakers = {e.speaker for e in bridge.events if e.is_final}
    assert speakers == {"Speaker 1", "Speaker 2"}
    # A second socket for the same meeting takes over from the first.
    old, old_reader = bridge.ws, bridge.reader
    await bridge.connect(query)
    await asyncio.wait_for(old_reader, 5)  # the server closed the older socket
    assert old.closed and old.close_code == 1000
    await bridge.ws.send_str(ping(5))
    await bridge.wait_for(lambda: any(m.get("id") == 5 for _, m in bridge.received), 5)
    await bridge.close()


async def test_a_full_captioner_refuses_a_new_meeting_with_1013_and_keeps_its_own(
    open_bridge: Callable[..., Awaitable[Bridge]], engine: Engine
) -> None:
    bridge = await open_bridge(bridge_resume_seconds=30.0)
    await bridge.connect("sessionId=held", read=False)
    await bridge.ws.send_str(FakeBridge().start("aaaaaaaa"))
    await bridge.wait_for(lambda: "held" in bridge.client.app[bridge_sessions_key].sessions)
    # Every stream this engine may run is taken (by other meetings, say).
    leases = []
    while engine.full_reason() is None:
        leases.append(engine.open_stream("vosk"))
    try:
        health = await bridge.client.get("/healthz")
        assert health.status == 503 and "full" in (await health.json())["reason"]
        newcomer = await bridge.client.ws_connect("/transcribe?sessionId=another")
        message = await newcomer.receive(timeout=5)
        assert message.type == WSMsgType.CLOSE and newcomer.close_code == 1013
        assert "another" not in bridge.client.app[bridge_sessions_key].sessions
        # The meeting it holds reconnects (a videobridge restart, a network blip).
        await bridge.ws.close()
        again = await bridge.client.ws_connect("/transcribe?sessionId=held")
        await again.send_str(FakeBridge().start("bbbbbbbb"))
        await asyncio.sleep(0.3)
        assert not again.closed
        await again.close()
    finally:
        for lease in leases:
            await lease.close()
    assert engine.full_reason() is None
    await bridge.close()
