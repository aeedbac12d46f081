"""Captioner → orchestrator delivery, through real processes and real HTTP.

The orchestrator runs as its own process (``plenary serve --no-captioner``) on a
temporary database, so it can be killed with SIGKILL and restarted on the same file;
the captioner app listens on a loopback port in this process (sharing the loaded
Korean model) and delivers to it over HTTP, as a captioner on another host does.
Real Korean speech goes in through the vosk websocket and the bridge ``/transcribe``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bench.harness import procs
from bench.harness.audio import read_pcm, speak_over_vosk
from bench.harness.netutil import free_port
from bench.harness.opus_frames import FakeBridge
from bots.captioner import metrics as cmetrics
from bots.captioner.app import RedactingAccessLogger, create_app, delivery_key
from bots.captioner.captioner_keys import captioner_bus_key
from bots.captioner.engine import Engine
from plenary.corpus import Utterance
from plenary.events import CaptionEvent
from plenary.fanout import Subscription
from plenary.settings import Settings
from tests.captions_helpers import cli_rooms

TOKEN = "producer-token-for-tests"
ACCESS = "captioner-access-token"
READER = "service-reader-token"
ROOM = "talk"


class Orchestrator:
    """``plenary serve --no-captioner`` as a child process on a fixed port and database."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}  # more settings for the next start
        cli_rooms(tmp / "plenary.sqlite3", ROOM)  # captions for unknown rooms are refused

    def start(self) -> None:
        env = {
            **os.environ,
            "PLENARY_ORCHESTRATOR__DATABASE": str(self.tmp / "plenary.sqlite3"),
            "PLENARY_ORCHESTRATOR__PORT": str(self.port),
            "PLENARY_CAPTIONS__PRODUCERS": json.dumps({"captioner-1": TOKEN}),
            "PLENARY_CAPTIONS__SERVICE_READERS": json.dumps({"test": READER}),
            "PLENARY_LOG_LEVEL": "WARNING",
            **self.env,
        }
        plenary = Path(sys.executable).with_name("plenary")
        self.proc = subprocess.Popen(
            [str(plenary), "serve", "--no-captioner"], env=env, cwd=self.tmp
        )

    async def ready(self) -> None:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.get(f"{self.url}/healthz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError("the orchestrator did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        procs.stop(self.proc)

    async def captions(self, room: str) -> list[dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"{self.url}/api/v1/rooms/{room}/captions?after=0&limit=1000",
                headers={"Authorization": f"Bearer {READER}"},  # reads every room
            ) as r,
        ):
            assert r.status == 200
            events: list[dict[str, Any]] = (await r.json())["events"]
            return events


@pytest.fixture
def orchestrator(tmp_path: Path) -> Any:
    o = Orchestrator(tmp_path)
    yield o
    o.stop()


@asynccontextmanager
async def captioner(
    settings: Settings, engine: Engine, orchestrator: str, **captioner: Any
) -> AsyncIterator[tuple[web.Application, str]]:
    """The captioner app on a loopback port, delivering to ``orchestrator``."""
    over = {"orchestrator_url": orchestrator, "orchestrator_token": TOKEN, **captioner}
    custom = settings.model_copy(update={"captioner": settings.captioner.model_copy(update=over)})
    app = create_app(custom, engine=engine)
    runner = web.AppRunner(app, access_log_class=RedactingAccessLogger)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield app, f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s")
        await asyncio.sleep(0.1)


async def speak(address: str, utt: Utterance, *, token: str = ACCESS) -> None:
    """One utterance over the vosk websocket, as fast as the captioner takes it."""
    url = f"ws://{address}/?room={ROOM}&speaker=Kim&lang=ko&token={token}"
    await speak_over_vosk(url, utt.path)


def finals_of(sub: Subscription[CaptionEvent]) -> list[CaptionEvent]:
    out = []
    while True:
        try:
            event = sub.queue.get_nowait()
        except asyncio.QueueEmpty:
            return out
        if event is not None and event.is_final:
            out.append(event)


async def test_vosk_finals_survive_an_orchestrator_kill9_once_each_in_order(
    settings: Settings, engine: Engine, ko_corpus: list[Utterance], orchestrator: Orchestrator
) -> None:
    orchestrator.start()
    await orchestrator.ready()
    utterances = ko_corpus[:6]
    async with captioner(settings, engine, orchestrator.url, access_token=ACCESS) as (app, addr):
        # what the captioner produced, in order
        produced = app[captioner_bus_key].subscribe(maxsize=10_000)
        delivery = app[delivery_key]
        for n, utt in enumerate(utterances):
            if n == 2:
                # Mid-speech: SIGKILL while this utterance streams; its final and the next
                # ones wait in the captioner's queue until the orchestrator is back.
                speaking = asyncio.create_task(speak(addr, utt))
                await asyncio.sleep(0.3)
                orchestrator.kill()
                await speaking
                continue
            if n == 4:
                assert delivery.finals, "finals should be queued while the orchestrator is down"
                orchestrator.start()  # the same database
            await speak(addr, utt)
        await orchestrator.ready()

        async def all_delivered() -> bool:
            return not delivery.finals and delivery.healthy

        await until(all_delivered)
        finals = finals_of(produced)
    stored = await orchestrator.captions(ROOM)
    assert len(finals) >= len(utterances)
    assert [c["text"] for c in stored] == [e.text for e in finals]  # each once, in order
    assert [c["seq"] for c in stored] == list(range(1, len(finals) + 1))
    assert {c["speaker"] for c in stored} == {"Kim"}
    assert delivery.delivered == delivery.produced == len(finals)


async def test_bridge_captions_carry_meeting_and_endpoint(
    settings: Settings, engine: Engine, ko_corpus: list[Utterance], orchestrator: Orchestrator
) -> None:
    # A meeting no room is known for: kept under its id only with accept_unknown_rooms.
    orchestrator.env["PLENARY_CAPTIONS__ACCEPT_UNKNOWN_ROOMS"] = "true"
    orchestrator.start()
    await orchestrator.ready()
    fake = FakeBridge()
    frames = []
    for tag, utt in (("aaaa1111-a0", ko_corpus[1]), ("bbbb2222-a0", ko_corpus[4])):
        pcm = read_pcm(utt.path, 48000)[0] + b"\0" * 48000 * 2
        frames += [fake.start(tag), *(f for _, f in fake.speech(tag, pcm))]
    async with (
        captioner(settings, engine, orchestrator.url, access_token=ACCESS) as (app, addr),
        aiohttp.ClientSession() as http,
    ):
        url = f"ws://{addr}/transcribe?sessionId=meeting-42&lang=ko"
        headers = {"Authorization": f"Bearer {ACCESS}"}
        async with http.ws_connect(url, headers=headers) as ws:
            for frame in frames:
                await ws.send_str(frame)

            async def two() -> bool:
                return len(await orchestrator.captions("meeting-42")) >= 2

            await until(two)
    stored = await orchestrator.captions("meeting-42")  # no room= in the URL: the meeting id
    assert {c["speaker"] for c in stored} == {"Speaker 1", "Speaker 2"}
    assert all(c["room"] == "meeting-42" for c in stored)
    assert await orchestrator.captions(ROOM) == []


async def test_overflow_while_down_gives_one_notice_with_the_count(
    settings: Settings, engine: Engine, orchestrator: Orchestrator
) -> None:
    """The queue logic with a tiny queue: events go in through the captioner's bus (the
    recognition side), out over real HTTP to the real orchestrator process."""
    dropped = cmetrics.DELIVERY_DROPPED.labels(kind="final")._value.get()
    async with captioner(settings, engine, orchestrator.url, delivery_queue=10) as (app, _):
        delivery = app[delivery_key]
        for n in range(25):  # nobody listens yet: 15 of them cannot be kept
            app[captioner_bus_key].publish(
                CaptionEvent(ROOM, "Lee", "ko", f"line {n}", True, n, n + 0.5, f"m{n}")
            )
            if n == 0:
                await until(lambda: asyncio.sleep(0, not delivery.healthy), 10)
        assert len(delivery.finals) == 10
        orchestrator.start()

        async def delivered() -> bool:
            return len(await orchestrator.captions(ROOM)) >= 11 and not delivery.finals

        await orchestrator.ready()
        await until(delivered)
        await asyncio.sleep(1.0)  # and nothing more comes (one notice only)
    stored = await orchestrator.captions(ROOM)
    assert [(c["speaker"], c["text"]) for c in stored] == [
        ("Plenary", "15 captions were lost while the orchestrator was unreachable."),
        *[("Lee", f"line {n}") for n in range(15, 25)],
    ]
    assert cmetrics.DELIVERY_DROPPED.labels(kind="final")._value.get() - dropped == 15


async def test_wrong_producer_token_is_refused_and_logged(
    settings: Settings,
    engine: Engine,
    orchestrator: Orchestrator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    orchestrator.start()
    await orchestrator.ready()
    failed = cmetrics.DELIVERY_FAILED._value.get()
    caplog.set_level(logging.WARNING, logger="bots.captioner.delivery")
    async with captioner(
        settings, engine, orchestrator.url, orchestrator_token="not-a-producer"
    ) as (app, _):
        delivery = app[delivery_key]
        for n in range(3):
            app[captioner_bus_key].publish(
                CaptionEvent(ROOM, "Lee", "ko", f"x{n}", True, 0, 1, f"m{n}")
            )

        async def refused() -> bool:
            return cmetrics.DELIVERY_FAILED._value.get() - failed >= 3 and not delivery.finals

        await until(refused, 20)
    assert await orchestrator.captions(ROOM) == []
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(lines) == 1, lines  # once, not once per batch
    assert "HTTP 403" in lines[0] and "orchestrator_token" in lines[0]
    assert "not-a-producer" not in caplog.text


async def test_captioner_access_token(
    settings: Settings,
    engine: Engine,
    ko_corpus: list[Utterance],
    orchestrator: Orchestrator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    orchestrator.start()
    await orchestrator.ready()
    async with (
        captioner(settings, engine, orchestrator.url, access_token=ACCESS) as (app, addr),
        aiohttp.ClientSession() as http,
    ):
        for path in ("/", "/transcribe?sessionId=m1"):
            sep = "&" if "?" in path else "?"
            for suffix, headers in (
                ("", {}),
                (f"{sep}token=wrong", {}),
                ("", {"Authorization": "Bearer wrong"}),
            ):
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await http.ws_connect(f"ws://{addr}{path}{suffix}", headers=headers)
                assert refused.value.status == 401
            async with http.get(f"ws://{addr}{path}".replace("ws:", "http:")) as r:
                assert r.status == 401
                assert "access token" in await r.text()
        async with http.get(f"http://{addr}/healthz") as r:
            assert r.status == 200
        async with http.get(f"http://{addr}/metrics") as r:
            assert r.status == 200
            assert "plenary_captioner_delivery_queue" in await r.text()
        # With the token: the bridge answers a ping, the vosk socket captions speech.
        async with http.ws_connect(f"ws://{addr}/transcribe?sessionId=m1&token={ACCESS}") as ws:
            await ws.send_str(json.dumps({"event": "ping", "id": 7}))
            assert json.loads(await ws.receive_str(timeout=5)) == {"event": "pong", "id": 7}
        await speak(addr, ko_corpus[0])

        async def stored() -> bool:
            return len(await orchestrator.captions(ROOM)) >= 1

        await until(stored)
    assert "token=redacted" in caplog.text  # the access log saw the URLs …
    assert ACCESS not in caplog.text  # … but never the token


async def test_plenary_serve_delivers_over_loopback_http(
    ko_corpus: list[Utterance], tmp_path: Path
) -> None:
    """The embedded topology takes the same path: the captioner beside the orchestrator
    posts to it with a token made up at start-up (no producer configured)."""
    oport, cport = free_port(), free_port()
    env = {
        **os.environ,
        "PLENARY_ORCHESTRATOR__DATABASE": str(tmp_path / "plenary.sqlite3"),
        "PLENARY_ORCHESTRATOR__PORT": str(oport),
        "PLENARY_CAPTIONER__PORT": str(cport),
        "PLENARY_LOG_LEVEL": "INFO",
    }
    plenary = Path(sys.executable).with_name("plenary")
    cli_rooms(tmp_path / "plenary.sqlite3", ROOM)
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [str(plenary), "serve"], env=env, cwd=tmp_path, stderr=log_file, stdout=log_file
        )
    try:
        async with aiohttp.ClientSession() as http:

            async def up() -> bool:
                try:
                    async with http.get(f"http://127.0.0.1:{cport}/healthz") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            await until(up)
            await speak(f"127.0.0.1:{cport}", ko_corpus[3])
            url = f"http://127.0.0.1:{oport}/api/v1/rooms/{ROOM}/captions"

            async def stored() -> bool:
                async with http.get(url) as r:
                    return bool((await r.json())["events"])

            await until(stored, 30)
            # Nothing else may post: the made-up token is this process's own.
            async with http.post(
                f"http://127.0.0.1:{oport}/api/v1/captions", json={"events": []}
            ) as r:
                assert r.status == 401
    finally:
        proc.terminate()
        proc.wait(15)
    text = log_path.read_text(errors="replace")
    assert f"delivering captions to http://127.0.0.1:{oport}/api/v1/captions" in text


async def test_standalone_captioner_without_orchestrator_says_so(
    settings: Settings, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bots.captioner.app")
    async with captioner(settings, engine, ""):
        pass
    assert "captions go back to Jitsi only" in caplog.text
