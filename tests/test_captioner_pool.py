"""The captioner pool: two real ``plenary captioner serve`` processes (real Korean model)
behind a real HAProxy on 127.0.0.1, configured by the Ansible role's template
(bench/harness/pool.py). A bridge session that reconnects lands on the captioner that
holds it and loses no words; a killed captioner's new streams go to the other; a full
captioner is skipped, and refuses a direct stream with 1013."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from bench.harness.opus_frames import FakeBridge
from bench.harness.pool import Captioner, HAProxy, captioner_pool
from plenary.corpus import Utterance
from plenary.scoring import cer
from tests.test_bridge_endpoint import speech

pytestmark = pytest.mark.skipif(
    shutil.which("haproxy") is None, reason="haproxy is not installed (make deps)"
)
TRY_AGAIN = 1013
# captioner1 takes one stream (so one held stream fills it); captioner2 the default.
ENVS = [
    {"PLENARY_CAPTIONER__MAX_STREAMS": "1"},
    {"PLENARY_CAPTIONER__MAX_STREAMS": "8"},
]
COMMON = {"PLENARY_CAPTIONER__BRIDGE_RESUME_SECONDS": "2", "PLENARY_CAPTIONER__THREADS": "1"}


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HAProxy, list[Captioner]]]:
    folder = tmp_path_factory.mktemp("pool")
    with captioner_pool(folder, [{**COMMON, **env} for env in ENVS]) as pool:
        yield pool


@pytest.fixture
def pool(started: tuple[HAProxy, list[Captioner]]) -> tuple[HAProxy, list[Captioner]]:
    """The pool with every captioner running, idle and up (a test may have killed one)."""
    proxy, captioners = started
    for c in captioners:
        if not c.alive():
            c.start()
            c.wait_healthy()
    deadline = time.monotonic() + 10
    while any(c.health()[1]["streams"] for c in captioners):
        assert time.monotonic() < deadline, [c.health() for c in captioners]
        time.sleep(0.1)
    proxy.wait_states({c.name: "UP" for c in captioners})
    return proxy, captioners


class BridgeSocket:
    """One /transcribe websocket through HAProxy: which captioner served it, what came back."""

    def __init__(
        self, ws: aiohttp.ClientWebSocketResponse, finals: list[str], session_id: str
    ) -> None:
        self.ws = ws
        self.session_id = session_id
        self.served_by = ws._response.headers.get("X-Plenary-Captioner")
        self._finals = finals
        self.finals = 0  # finals received on this socket
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                data = json.loads(msg.data)
                if data.get("type") == "transcription-result" and not data["is_interim"]:
                    self._finals.append(data["transcript"][0]["text"])
                    self.finals += 1

    async def send(self, frames: list[tuple[float, str]], pace: float = 2.0) -> None:
        begin = time.monotonic()
        first = frames[0][0] if frames else 0.0
        for offset, frame in frames:
            delay = begin + (offset - first) / pace - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.ws.send_str(frame)

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.wait_for(self._reader, 5)


async def bridge(
    http: aiohttp.ClientSession, proxy: HAProxy, session_id: str, finals: list[str]
) -> BridgeSocket:
    url = f"{proxy.ws_url}/transcribe?sessionId={session_id}&sendBack=true"
    return BridgeSocket(await http.ws_connect(url), finals, session_id)


async def vosk(http: aiohttp.ClientSession, url: str) -> tuple[str | None, Any]:
    """A Jigasi-like client's first exchange: (captioner, reply) when served, (captioner,
    close code) when refused. The socket is left open while served (a held stream)."""
    ws = await http.ws_connect(url)
    served_by = ws._response.headers.get("X-Plenary-Captioner")
    await ws.send_str(json.dumps({"config": {"sample_rate": 16000}}))
    await ws.send_bytes(b"\0" * 3200)
    msg = await ws.receive(timeout=20)
    if msg.type == aiohttp.WSMsgType.TEXT:
        return served_by, (ws, json.loads(msg.data))
    return served_by, ws.close_code


async def until(check: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def quiet(finals: list[str], still: float = 1.5, timeout: float = 15.0) -> None:
    """Wait for a first final, then until no new one came for ``still`` seconds."""
    await until(lambda: bool(finals), timeout)
    count, since = len(finals), time.monotonic()
    while time.monotonic() - since < still:
        await asyncio.sleep(0.05)
        if len(finals) != count:
            count, since = len(finals), time.monotonic()


async def test_a_reconnecting_bridge_session_keeps_its_captioner_and_its_words(
    pool: tuple[HAProxy, list[Captioner]], ko_corpus: list[Utterance]
) -> None:
    proxy, captioners = pool
    first, second = ko_corpus[7], ko_corpus[9]
    fake = FakeBridge()
    finals: list[str] = []
    async with aiohttp.ClientSession() as http:
        before = await bridge(http, proxy, "pool-resume", finals)
        # The first utterance to its last sample, then the drop: its final is not out yet.
        await before.send(
            [(0.0, fake.start("aaaa-a0")), *fake.speech("aaaa-a0", speech([first], gap_s=0.0))]
        )
        await before.close()
        await asyncio.sleep(0.5)
        after = await bridge(http, proxy, "pool-resume", finals)
        await after.send(fake.speech("aaaa-a0", speech([second], gap_s=1.0)))
        # Until both utterances' words are back (on a busy machine the second final can
        # trail the first by seconds), at most 30 s; then until no more come.
        reference = f"{first.text} {second.text}"
        with contextlib.suppress(AssertionError):
            await until(lambda: cer([(reference, " ".join(finals))]) < 0.25, 30.0)
        await quiet(finals)
        health = {c.name: (await asyncio.to_thread(c.health))[1] for c in captioners}
        await after.close()
    # Normally the first utterance's final too comes on the new socket (it ends with the
    # drop, before its trailing silence); the second one's always does.
    assert after.finals >= 1
    assert before.served_by in health and after.served_by == before.served_by
    # The session lives on the captioner that served both sockets, and nowhere else.
    assert {name: h["bridge_sessions"] for name, h in health.items()} == {
        name: int(name == before.served_by) for name in health
    }
    # Every word of both utterances came back: nothing was lost at the drop.
    text = " ".join(finals)
    assert cer([(reference, text)]) < 0.25, (reference, text)


async def test_a_full_captioner_is_skipped_and_refuses_a_direct_stream_with_1013(
    pool: tuple[HAProxy, list[Captioner]],
) -> None:
    proxy, (small, big) = pool
    async with aiohttp.ClientSession() as http:
        # A meeting whose sessionId HAProxy hashes onto the small captioner (no stream yet).
        for n in range(20):
            meeting = await bridge(http, proxy, f"pool-meeting-{n}", [])
            await meeting.close()
            if meeting.served_by == small.name:
                break
        assert meeting.served_by == small.name
        served_by, (held, _) = await vosk(http, f"ws://{small.address}/")
        assert served_by is None  # straight to the captioner, not through HAProxy
        status, body = await asyncio.to_thread(small.health)
        assert status == 503 and body["status"] == "full" and "max_streams" in body["reason"]
        await asyncio.to_thread(proxy.wait_states, {small.name: "DOWN", big.name: "UP"}, 5)
        # That meeting's bridge reconnecting still reaches the captioner holding it.
        again = await bridge(http, proxy, meeting.session_id, [])
        assert again.served_by == small.name
        await again.close()
        streams = [await vosk(http, f"{proxy.ws_url}/") for _ in range(3)]
        assert [s for s, _ in streams] == [big.name] * 3
        assert all(isinstance(reply, tuple) for _, reply in streams)  # each one served
        socket = await bridge(http, proxy, "pool-new-meeting", [])
        assert socket.served_by == big.name
        await socket.close()
        # A stream that still reaches the full captioner is refused: try again later.
        assert await vosk(http, f"ws://{small.address}/") == (None, TRY_AGAIN)
        for _, (ws, _) in streams:
            await ws.close()
        await held.close()
    await asyncio.to_thread(proxy.wait_states, {small.name: "UP"}, 5)
    assert (await asyncio.to_thread(small.health))[0] == 200
    # HAProxy's checks fill no log: only the answers that said "full" are logged.
    checks = [ln for ln in small.log().splitlines() if "GET /healthz" in ln]
    assert checks and all('" 503 ' in ln for ln in checks), checks[:3]


async def test_a_killed_captioner_leaves_new_streams_to_the_other(
    pool: tuple[HAProxy, list[Captioner]],
) -> None:
    proxy, (victim, survivor) = pool
    await asyncio.to_thread(victim.kill)  # SIGKILL; HAProxy has not noticed yet
    async with aiohttp.ClientSession() as http:
        streams = [await vosk(http, f"{proxy.ws_url}/") for _ in range(3)]
        sockets = [await bridge(http, proxy, f"pool-after-kill-{n}", []) for n in range(3)]
        assert [s for s, _ in streams] == [survivor.name] * 3
        assert all(isinstance(reply, tuple) for _, reply in streams)
        assert [s.served_by for s in sockets] == [survivor.name] * 3
        for _, (ws, _) in streams:
            await ws.close()
        for s in sockets:
            await s.close()
    await asyncio.to_thread(proxy.wait_states, {victim.name: "DOWN", survivor.name: "UP"}, 5)
