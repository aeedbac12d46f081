"""Hostile bridge input against the running captioner (issue 14): a storm of sessions and
tags, session end, junk Opus, memory shedding. Real websockets to the captioner app on
loopback, its /healthz and /metrics read over HTTP; the real Korean model."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp import WSMsgType
from prometheus_client.parser import text_string_to_metric_families

from bench.harness.audio import read_pcm
from bench.harness.opus_frames import FakeBridge
from bots.captioner.bridge_ws import bridge_sessions_key
from bots.captioner.engine import Engine
from bots.captioner.metrics import rss_bytes
from plenary.corpus import Utterance
from plenary.scoring import cer
from plenary.settings import CaptionerSettings
from tests.test_bridge_endpoint import Bridge, joined, open_bridge, speech

__all__ = ["open_bridge"]  # the fixture, used by name

Opener = Callable[..., Awaitable[Bridge]]


@contextlib.contextmanager
def engine_limits(engine: Engine, **update: Any) -> Iterator[CaptionerSettings]:
    """The shared engine with other captioner limits for one test (as if started with them)."""
    pool = engine.recognizers
    saved, limit, peak, warm = engine.settings, pool.limit, pool.peak_seconds, pool.warm
    engine.settings = saved.model_copy(update=update)
    pool.limit = engine.settings.max_streams
    pool.peak_seconds = engine.settings.warm_peak_seconds
    pool.warm = engine.settings.warm_recognizers
    try:
        yield engine.settings
    finally:
        engine.settings, pool.limit, pool.peak_seconds, pool.warm = saved, limit, peak, warm


async def health(bridge: Bridge) -> dict[str, Any]:
    async with bridge.client.get("/healthz") as r:
        data: dict[str, Any] = await r.json()
        return data


async def metric(bridge: Bridge, name: str, **labels: str) -> float:
    async with bridge.client.get("/metrics") as r:
        text = await r.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"{name}{labels} not exported")


async def vosk_reply(bridge: Bridge) -> tuple[WSMsgType, Any]:
    """A vosk client's first exchange: (TEXT, reply) when served, (CLOSE, code) when not."""
    ws = await bridge.client.ws_connect("/?room=r&speaker=v")
    try:
        with contextlib.suppress(ConnectionError):  # refused: the server is closing
            await ws.send_str(json.dumps({"config": {"sample_rate": 16000}}))
            await ws.send_bytes(b"\0" * 3200)
        msg = await ws.receive(timeout=30)
        return msg.type, (msg.data if msg.type == WSMsgType.TEXT else ws.close_code)
    finally:
        await ws.close()


def speech_frames(fake: FakeBridge, tag: str, pcm: bytes, packets: int) -> list[str]:
    return [frame for _, frame in fake.speech(tag, pcm, silence="send")[:packets]]


# --- the storm ---


async def test_bridge_storm_stays_within_limits_and_leaves_room_for_vosk(
    open_bridge: Opener, engine: Engine, ko_corpus: list[Utterance]
) -> None:
    """The probe, smaller: 200 starts, 50 Opus packets per tag as fast as possible,
    session-end, close; three sessions back to back."""
    pcm = read_pcm(ko_corpus[7].path, 48000)[0]
    # The pool keeps a peak warm for warm_peak_seconds (60 s by default) and a floor of
    # warm_recognizers always (memory it is meant to hold; tests/test_recognizer_pool.py):
    # 5 s and none here, so what the storm took is seen coming back within the minute.
    limits = {"warm_peak_seconds": 5.0, "warm_recognizers": 0}
    with engine_limits(engine, max_streams=24, bridge_max_sources=10, **limits):
        bridge = await open_bridge(bridge_max_sources=10)
        baseline = (await health(bridge))["streams"]
        rss_start = rss_bytes()
        peak = {"streams": 0, "in_use": 0}
        stop = asyncio.Event()

        async def watch() -> None:
            while not stop.is_set():
                data = await health(bridge)
                peak["streams"] = max(peak["streams"], data["streams"])
                peak["in_use"] = max(peak["in_use"], data["recognizers"]["in_use"])
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(watch())
        served = []
        for round_ in range(3):
            await bridge.connect(f"sessionId=storm-{round_}")
            fake = FakeBridge()
            tags = [f"{n:08x}-a0" for n in range(200)]
            for tag in tags:
                await bridge.ws.send_str(fake.start(tag))
            for tag in tags:
                for frame in speech_frames(fake, tag, pcm, 50):
                    await bridge.ws.send_str(frame)
            sid = f"storm-{round_}"
            await bridge.wait_for(lambda: tags[-1] in refused(bridge, sid), 10)  # noqa: B023
            session = session_of(bridge, sid)
            # captioner.bridge_max_sources, or fewer while the last session's sources are
            # still closing (its fair share then counts two sessions)
            assert 0 < len(session.participants) <= 10
            reason = session.refused[tags[-1]]
            assert "bridge_max_sources" in reason or "fair share" in reason, reason
            # While the storm session lives, a vosk client is still served.
            served.append(await vosk_reply(bridge))
            await bridge.ws.send_str(json.dumps({"event": "session-end"}))
            await bridge.close()
        deadline = time.monotonic() + 10
        while (await health(bridge))["streams"] != baseline:
            assert time.monotonic() < deadline, await health(bridge)
            await asyncio.sleep(0.1)
        stop.set()
        await watcher
        assert all(kind == WSMsgType.TEXT for kind, _ in served), served
        assert peak["streams"] <= 24, peak
        assert peak["in_use"] <= 24, peak
        assert peak["in_use"] > 0  # the storm did reach the recognizers
        assert (await health(bridge))["recognizers"]["in_use"] == 0
        # Memory comes back within a minute.
        deadline = time.monotonic() + 60
        while rss_bytes() > rss_start + 100 * 2**20:
            assert time.monotonic() < deadline, (rss_bytes() - rss_start) / 2**20
            await asyncio.sleep(1)


async def test_a_session_holds_its_fair_share_and_vosk_gets_1013_only_when_full(
    open_bridge: Opener, engine: Engine
) -> None:
    with engine_limits(engine, max_streams=6, bridge_max_sources=50):
        bridge = await open_bridge(bridge_max_sources=50)
        baseline = (await health(bridge))["streams"]
        assert baseline == 0
        await bridge.connect("sessionId=greedy")
        fake = FakeBridge()
        for n in range(20):
            await bridge.ws.send_str(fake.start(f"{n:08x}-a0"))
        await bridge.wait_for(lambda: "00000013-a0" in refused(bridge, "greedy"), 5)
        session = session_of(bridge, "greedy")
        assert len(session.participants) == 3  # 6 streams shared with the vosk endpoint
        assert "fair share" in session.refused["00000013-a0"]
        # Three vosk clients fit; the fourth finds every stream taken: 1013, saying so.
        clients = [await bridge.client.ws_connect("/?room=r") for _ in range(3)]
        kind, code = await vosk_reply(bridge)
        assert (kind, code) == (WSMsgType.CLOSE, 1013)
        for ws in clients:
            await ws.close()
        await bridge.ws.send_str(json.dumps({"event": "session-end"}))
        await bridge.close()


def session_of(bridge: Bridge, sid: str) -> Any:
    return bridge.client.app[bridge_sessions_key].sessions[sid]


def participants(bridge: Bridge, sid: str) -> list[Any]:
    session = bridge.client.app[bridge_sessions_key].sessions.get(sid)
    return list(session.participants.values()) if session is not None else []


def refused(bridge: Bridge, sid: str) -> dict[str, str]:
    session = bridge.client.app[bridge_sessions_key].sessions.get(sid)
    return session.refused if session is not None else {}


# --- session end ---


async def test_session_end_drops_queued_audio_and_frees_recognizers_at_once(
    open_bridge: Opener, engine: Engine, ko_corpus: list[Utterance]
) -> None:
    pcm = speech(ko_corpus[0:6])  # ~30 s of speech per tag, sent as fast as possible
    bridge = await open_bridge()
    baseline = (await health(bridge))["streams"]
    await bridge.connect("sessionId=ending")
    fake = FakeBridge()
    tags = [f"{n:08x}-a0" for n in range(8)]
    frames = [fake.start(tag) for tag in tags]
    for tag in tags:
        frames += speech_frames(fake, tag, pcm, 450)  # 9 s each: 72 s of audio queued
    for frame in frames:
        await bridge.ws.send_str(frame)
    # Every frame read by the captioner (the clock starts when session-end can be read).
    await bridge.wait_for(lambda: session_of(bridge, "ending").frames == len(frames))
    assert sum(s.queue.qsize() for s in participants(bridge, "ending")) > 500
    decoded = await metric(bridge, "plenary_captioner_opus_decoded_packets_total")
    await bridge.ws.send_str(json.dumps({"event": "session-end"}))
    ended = time.monotonic()
    while True:
        data = await health(bridge)
        if data["streams"] == baseline and data["recognizers"]["in_use"] == 0:
            break
        # Waiting decodes are skipped and running ones stop within 0.1 s of audio, but a
        # Kaldi call already under way (an utterance's final) runs to its end: 1.2-1.8 s
        # measured with the 2 cores shared with other work (load ~3); 3 s allowed.
        assert time.monotonic() - ended < 3.0, data
        await asyncio.sleep(0.05)
    print(f"released {time.monotonic() - ended:.2f} s after session-end")
    after = await metric(bridge, "plenary_captioner_opus_decoded_packets_total")
    await asyncio.sleep(1.0)
    assert await metric(bridge, "plenary_captioner_opus_decoded_packets_total") == after
    assert after - decoded < 8 * 450 / 2, (decoded, after)  # most of the queue was dropped
    await bridge.close()


# --- invalid Opus ---

BAD_PACKETS = {
    "toc": b"\xff\x00",  # code 3 with no frames
    "truncated": b"\x7a\xfc",  # code 2: the first frame's length needs a second byte
    "length": b"\x78" + bytes(1276),  # one frame over 1275 bytes
    "oversized": b"\x7b\x03" + bytes(8000),
    "empty": b"",
}


async def test_invalid_opus_is_refused_counted_and_never_becomes_captions(
    open_bridge: Opener, ko_corpus: list[Utterance]
) -> None:
    bridge = await open_bridge()
    before = {
        reason: await metric(bridge, "plenary_captioner_opus_refused_packets_total", reason=reason)
        for reason in BAD_PACKETS
    }
    await bridge.connect("sessionId=junk&sendBack=true")
    fake = FakeBridge()
    good = fake.speech("900d-a0", speech([ko_corpus[7]], gap_s=0.6), silence="send")
    bad = [base64.b64encode(p).decode() for p in BAD_PACKETS.values()]
    frames = [fake.start("900d-a0"), fake.start("ba5e-a0")]
    for n, (_, frame) in enumerate(good):
        frames.append(frame)
        if n % 10 == 0:  # now and then a bad packet among the good speaker's
            frames.append(fake.media("900d-a0", bad[(n // 10) % len(bad)]))
        # The other tag: two junk packets for each one of real speech.
        frames.append(fake.media("ba5e-a0", bad[n % len(bad)]))
        frames.append(fake.media("ba5e-a0", bad[(n + 1) % len(bad)]))
        frames.append(fake.media("ba5e-a0", json.loads(good[n][1])["media"]["payload"]))
    await bridge.send([(n * 0.005, f) for n, f in enumerate(frames)])
    await bridge.wait_for(lambda: bool(joined(bridge.results(final=True), "900d")))
    await asyncio.sleep(1.5)
    session = session_of(bridge, "junk")
    assert "900d-a0" in session.participants  # a few bad packets cost nothing else
    assert "undecodable" in session.refused["ba5e-a0"]
    assert cer([(ko_corpus[7].text, joined(bridge.results(final=True), "900d"))]) < 0.3
    assert not joined(bridge.results(), "ba5e")
    assert {e.endpoint for e in bridge.events} == {"900d"}
    for reason in BAD_PACKETS:
        now = await metric(bridge, "plenary_captioner_opus_refused_packets_total", reason=reason)
        assert now > before[reason], reason
    await bridge.close()


# --- memory ---


async def test_new_tags_and_streams_are_refused_near_the_memory_limit(
    open_bridge: Opener, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bots.captioner")
    # A meeting this captioner already holds (it connected before memory ran short).
    bridge = await open_bridge()
    await bridge.connect("sessionId=heavy")
    await bridge.wait_for(lambda: "heavy" in bridge.client.app[bridge_sessions_key].sessions, 5)
    rss_mb = rss_bytes() / 2**20
    with engine_limits(engine, max_rss_mb=int(rss_mb) + 20):
        await asyncio.sleep(1.1)  # RSS is read at most once a second
        # A new meeting is refused at once (1013), so the videobridge tries elsewhere.
        newcomer = await bridge.client.ws_connect("/transcribe?sessionId=newcomer")
        closing = await newcomer.receive(timeout=5)
        assert closing.type == WSMsgType.CLOSE and newcomer.close_code == 1013
        assert "max_rss_mb" in str(closing.extra)
        # The meeting it holds stays; its new speakers are refused one by one.
        fake = FakeBridge()
        await bridge.ws.send_str(fake.start("abcd-a0"))
        await bridge.wait_for(lambda: "abcd-a0" in refused(bridge, "heavy"), 5)
        assert "captioner.max_rss_mb" in session_of(bridge, "heavy").refused["abcd-a0"]
        assert not session_of(bridge, "heavy").participants
        kind, code = await vosk_reply(bridge)
        assert (kind, code) == (WSMsgType.CLOSE, 1013)
        logged = [r.getMessage() for r in caplog.records if "max_rss_mb" in r.getMessage()]
        assert any("abcd-a0" in m for m in logged) and len(logged) >= 2, logged
        assert await metric(bridge, "plenary_captioner_streams_refused_total", kind="memory") >= 2
        await bridge.close()
    # With the limit back, the same meeting's new tags are taken again.
    bridge = await open_bridge()
    await bridge.connect("sessionId=light")
    await bridge.ws.send_str(FakeBridge().start("abcd-a0"))
    await bridge.wait_for(
        lambda: "light" in bridge.client.app[bridge_sessions_key].sessions
        and "abcd-a0" in session_of(bridge, "light").participants,
        5,
    )
    await bridge.ws.send_str(json.dumps({"event": "session-end"}))
    await bridge.close()
