"""Streams are counted from open to close, whichever way they end, through the real endpoints.

Every stream holds a lease from the engine: the ``plenary_captioner_streams`` gauge (read
from the captioner's /metrics) and ``Engine.active_streams`` go up while it lives and back
to zero when it ends: eof, a new config, session-end, a client that vanishes without a
close frame, a bridge that never comes back, the server shutting down mid-utterance.
A stream given back twice would leave the gauge below zero. The real Korean model.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from bench.harness.audio import read_pcm
from bench.harness.opus_frames import FakeBridge
from bots.captioner.admission import Refused
from bots.captioner.app import create_app
from bots.captioner.engine import Engine
from plenary.corpus import Utterance
from plenary.settings import Settings
from tests.test_bridge_endpoint import speech
from tests.test_vosk_endpoint import RawWebSocket

pytestmark = pytest.mark.speech

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
TIMEOUT = 20.0


async def gauge(client: TestClient[Any, Any], path: str) -> float:
    """``plenary_captioner_streams{path=...}`` as the captioner's /metrics reports it."""
    async with client.get("/metrics") as r:
        text = await r.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "plenary_captioner_streams" and sample.labels["path"] == path:
                return float(sample.value)
    raise AssertionError(f"plenary_captioner_streams{{path={path!r}}} not exported")


async def counted(client: TestClient[Any, Any], engine: Engine, path: str, n: int) -> None:
    """Wait until the gauge and the engine both count ``n`` streams (fail after TIMEOUT)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        seen = (await gauge(client, path), engine.active_streams)
        if seen == (n, n):
            return
        assert time.monotonic() < deadline, f"{path}: (gauge, engine) = {seen}, expected {n}"
        await asyncio.sleep(0.05)


async def settled(client: TestClient[Any, Any], engine: Engine, path: str) -> None:
    await counted(client, engine, path, 0)
    assert engine.recognizers.in_use == 0


@pytest.fixture
async def captioner(
    aiohttp_client: ClientFactory, settings: Settings, engine: Engine
) -> TestClient[Any, Any]:
    custom = settings.model_copy(
        update={"captioner": settings.captioner.model_copy(update={"bridge_resume_seconds": 0.5})}
    )
    client = await aiohttp_client(create_app(custom, engine=engine))
    for path in ("vosk", "bridge"):
        await settled(client, engine, path)  # whatever ran before has let go
    return client


def pcm16k(utt: Utterance) -> bytes:
    return read_pcm(utt.path, 16000)[0]


# --- the vosk endpoint ---


async def test_vosk_stream_counted_until_eof_and_across_a_new_config(
    captioner: TestClient[Any, Any], engine: Engine, ko_corpus: list[Utterance]
) -> None:
    ws = await captioner.ws_connect("/?speaker=lease")
    await counted(captioner, engine, "vosk", 1)  # admitted with the socket, before any audio
    await ws.send_str(json.dumps({"config": {"sample_rate": 16000}}))
    pcm = pcm16k(ko_corpus[0])
    for i in range(0, len(pcm) // 2, 6400):
        await ws.send_bytes(pcm[i : i + 6400])
        assert (await ws.receive(timeout=TIMEOUT)).type == WSMsgType.TEXT
    # A new sample rate mid-utterance: a new transcriber, still the same one stream.
    await ws.send_str(json.dumps({"config": {"sample_rate": 8000}}))
    await ws.send_bytes(read_pcm(ko_corpus[1].path, 8000)[0][:16000])
    assert (await ws.receive(timeout=TIMEOUT)).type == WSMsgType.TEXT
    await counted(captioner, engine, "vosk", 1)
    await ws.send_str('{"eof": 1}')
    assert (await ws.receive(timeout=TIMEOUT)).type == WSMsgType.TEXT  # the last final
    assert (await ws.receive(timeout=TIMEOUT)).type == WSMsgType.CLOSE
    await settled(captioner, engine, "vosk")


async def test_vosk_client_vanishing_mid_utterance_releases_its_stream(
    captioner: TestClient[Any, Any], engine: Engine, ko_corpus: list[Utterance]
) -> None:
    raw = await RawWebSocket.connect(captioner, "/?speaker=vanishing")
    await raw.send(0x1, b'{"config": {"sample_rate": 16000}}')
    pcm = pcm16k(ko_corpus[2])
    for i in range(0, 16000 * 2 * 3, 6400):  # three seconds: speech is under way
        await raw.send(0x2, pcm[i : i + 6400])
        await raw.receive()
    assert engine.recognizers.in_use == 1
    await counted(captioner, engine, "vosk", 1)
    for i in range(16000 * 2 * 3, len(pcm), 6400):  # frames still in flight when it goes
        await raw.send(0x2, pcm[i : i + 6400])
    raw.abort()
    await settled(captioner, engine, "vosk")


async def test_vosk_refused_at_capacity_holds_nothing(
    aiohttp_client: ClientFactory, engine: Engine, captioner: TestClient[Any, Any]
) -> None:
    from plenary.settings import load_settings

    settings = load_settings(captioner={"max_streams": 1})
    capped = Engine(settings.captioner, engine.models)
    try:
        client = await aiohttp_client(create_app(settings, engine=capped))
        first = await client.ws_connect("/")
        await counted(client, capped, "vosk", 1)
        second = await client.ws_connect("/")
        msg = await second.receive(timeout=TIMEOUT)
        assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1013)
        await counted(client, capped, "vosk", 1)  # the refused one was never counted
        await first.close()
        await counted(client, capped, "vosk", 0)
    finally:
        capped.close()


async def test_server_shutdown_mid_utterance_releases_the_stream_once(
    aiohttp_client: ClientFactory,
    settings: Settings,
    engine: Engine,
    captioner: TestClient[Any, Any],
    ko_corpus: list[Utterance],
) -> None:
    """The handler is cancelled under a decode; the gauge is read from another app."""
    doomed = await aiohttp_client(create_app(settings, engine=engine))
    ws = await doomed.ws_connect("/?speaker=shutdown")
    await ws.send_str(json.dumps({"config": {"sample_rate": 16000}}))
    pcm = pcm16k(ko_corpus[3])
    for i in range(0, 16000 * 2 * 2, 6400):
        await ws.send_bytes(pcm[i : i + 6400])
        await ws.receive(timeout=TIMEOUT)
    for i in range(16000 * 2 * 2, len(pcm), 6400):
        await ws.send_bytes(pcm[i : i + 6400])
    await counted(captioner, engine, "vosk", 1)
    await doomed.close()  # the server shuts down with the stream open
    await settled(captioner, engine, "vosk")


# --- the bridge endpoint ---


async def test_bridge_participants_counted_until_session_end(
    captioner: TestClient[Any, Any], engine: Engine, ko_corpus: list[Utterance]
) -> None:
    ws = await captioner.ws_connect("/transcribe?sessionId=lease-end")
    fake = FakeBridge()
    pcm = speech([ko_corpus[4]], gap_s=0.0)
    for tag in ("aaaa-a0", "bbbb-a0"):
        await ws.send_str(fake.start(tag))
    await counted(captioner, engine, "bridge", 2)
    for _, frame in fake.speech("aaaa-a0", pcm)[:100]:  # two seconds of speech
        await ws.send_str(frame)
    await ws.send_str(json.dumps({"event": "session-end"}))
    async for _ in ws:  # the captioner closes the socket once the last finals are out
        pass
    await settled(captioner, engine, "bridge")


async def test_bridge_vanishing_mid_utterance_releases_every_participant(
    captioner: TestClient[Any, Any], engine: Engine, ko_corpus: list[Utterance]
) -> None:
    raw = await RawWebSocket.connect(captioner, "/transcribe?sessionId=lease-gone")
    fake = FakeBridge()
    tags = [f"{n:04x}-a0" for n in range(3)]
    for tag in tags:
        await raw.send(0x1, fake.start(tag).encode())
    pcm = speech([ko_corpus[5]], gap_s=0.0)
    for _, frame in fake.speech(tags[0], pcm)[:150]:  # three seconds, sent at once
        await raw.send(0x1, frame.encode())
    await counted(captioner, engine, "bridge", 3)
    raw.abort()  # no close frame, and it never comes back: the session expires (0.5 s)
    await settled(captioner, engine, "bridge")


# --- the lease itself ---


async def test_a_lease_is_given_back_once_however_often_closed(engine: Engine) -> None:
    before = engine.active_streams
    lease = engine.open_stream("file")
    assert engine.active_streams == before + 1
    lease.open_transcriber(sample_rate=16000, language="ko", room="r", speaker="s")
    with pytest.raises(RuntimeError):
        lease.open_transcriber(sample_rate=16000, language="ko", room="r", speaker="s")
    await asyncio.gather(lease.close(), lease.close())
    await lease.close()
    assert lease.closed and lease.transcriber is None
    assert engine.active_streams == before
    with pytest.raises(RuntimeError):
        lease.open_transcriber(sample_rate=16000, language="ko", room="r", speaker="s")


async def test_a_holder_cancelled_twice_mid_decode_still_gives_back_once(
    engine: Engine, ko_corpus: list[Utterance]
) -> None:
    """Cancelled while speaking, then again while its lease is closing: the recognizer
    goes back and the stream is released, once, after the decode under way ends."""
    before = engine.active_streams
    pcm = pcm16k(ko_corpus[6])
    speaking = asyncio.Event()

    async def holder() -> None:
        async with engine.open_stream("file") as lease:
            stream = lease.open_transcriber(sample_rate=16000, language="ko", room="r", speaker="c")
            for i in range(0, len(pcm), 3200):
                await stream.feed(pcm[i : i + 3200])
                if stream.in_utterance:
                    speaking.set()

    task = asyncio.create_task(holder())
    await asyncio.wait_for(speaking.wait(), TIMEOUT)
    task.cancel()
    await asyncio.sleep(0)  # the context manager's exit has begun closing the lease
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline = time.monotonic() + TIMEOUT
    while engine.active_streams != before or engine.recognizers.in_use:
        assert time.monotonic() < deadline, (engine.active_streams, engine.recognizers.stats())
        await asyncio.sleep(0.05)


async def test_a_refused_stream_is_not_counted(engine: Engine) -> None:
    from plenary.settings import CaptionerSettings

    capped = Engine(CaptionerSettings(max_streams=1), engine.models)
    try:
        async with capped.open_stream("file"):
            with pytest.raises(Refused, match="captioner.max_streams"):
                capped.open_stream("file")
            assert capped.active_streams == 1
        assert capped.active_streams == 0
    finally:
        capped.close()
