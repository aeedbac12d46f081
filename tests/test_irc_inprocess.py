"""``plenary irc --with-captioner`` relays the orchestrator's numbered captions.

A real ngircd, the real captioner (Korean model) and orchestrator in the process the
command runs, and an independent IRC client in the channel. Whoever produced a caption
(a speaker on the captioner's vosk websocket, an HTTP post), it reaches IRC once, in
the order of the orchestrator's caption numbers; after the command is restarted
nothing said before is posted again and what comes after is posted once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from argparse import Namespace
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bench.harness.audio import speak_over_vosk
from bench.harness.ircservers import HOST, RawClient, binary, start_server
from bench.harness.netutil import free_port
from plenary.compose import irc
from plenary.corpus import Utterance
from plenary.settings import Settings, load_settings
from tests.test_irc_orchestrator import (
    ADMIN,
    ROOM,
    TOKEN,
    create_room,
    irc_settings,
    post,
    until_up,
    words,
)


async def speak(port: int, utt: Utterance) -> None:
    """One utterance over the captioner's vosk websocket, as Jigasi sends it."""
    await speak_over_vosk(f"ws://{HOST}:{port}/?room={ROOM}&speaker=Kim&lang=ko", utt.path)


async def stored(base: str, speaker: str = "") -> list[tuple[int, str]]:
    """(seq, text) of the room's captions (of ``speaker`` if given), from the JSON API."""
    async with aiohttp.ClientSession() as http:
        r = await http.get(f"{base}/api/v1/rooms/{ROOM}/captions", params={"after": "0"})
        assert r.status == 200, await r.text()
        events = (await r.json())["events"]
    return [(e["seq"], e["text"]) for e in events if e["speaker"] == speaker or not speaker]


async def probe(base: str, observer: RawClient, word: str) -> None:
    """Post ``word`` until the relay posts it: a fresh relay starts at the room's newest
    caption, so until its stream is open a caption counts as history."""
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as http:
        while word not in words(observer):
            assert time.monotonic() < deadline, "plenary irc relayed nothing"
            with contextlib.suppress(aiohttp.ClientError):
                await post(http, base, "Probe", word)
            await asyncio.sleep(0.5)


@contextlib.asynccontextmanager
async def plenary_irc(settings: Settings) -> AsyncIterator[str]:
    """``plenary irc --with-captioner`` running, as the CLI runs it (its serve coroutine)."""
    task = asyncio.create_task(irc.serve(settings, with_captioner=True))
    base = f"http://{HOST}:{settings.orchestrator.port}"
    try:
        await until_up(base)
        yield base
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_irc_with_captioner_relays_the_stores_numbers_once(
    settings: Settings, ko_corpus: list[Utterance], tmp_path: Path
) -> None:
    if binary("ngircd") is None:
        pytest.skip("ngircd is not installed (make deps installs it)")
    assert irc.run(Namespace(orchestrator=None, with_captioner=True), settings) == 2  # no rooms
    with start_server("ngircd", tmp_path) as ircd:
        observer = await RawClient.connect(ircd.port, "watcher", "#room")
        configured = load_settings(
            orchestrator={
                "database": tmp_path / "db.sqlite3",
                "host": HOST,
                "port": free_port(),
                "admin_token": ADMIN,
            },
            captions={"producer_token": TOKEN},
            captioner={"host": HOST, "port": free_port(), "default_language": "ko"},
            irc=irc_settings(ircd.port).model_dump(),
        )
        try:
            async with plenary_irc(configured) as base:
                await create_room(base)
                await probe(base, observer, "probe")
                first = max(seq for seq, text in await stored(base) if text == "probe")
                await speak(configured.captioner.port, ko_corpus[0])  # → store → relay
                deadline = time.monotonic() + 30
                while not await stored(base, "Kim"):  # delivered over loopback HTTP
                    assert time.monotonic() < deadline, "the captioner's final was not stored"
                    await asyncio.sleep(0.2)
                async with aiohttp.ClientSession() as http:
                    await post(http, base, "Lee", "h1", "h2")
                said = [t for seq, t in await stored(base) if seq > first]
                expected = " ".join(said).split()
                assert len(said) >= 3 and said[-2:] == ["h1", "h2"]  # the speaker's final first
                await observer.wait_for(lambda: words(observer)[-len(expected) :] == expected, 30)
                before = words(observer)

            # Restarted: the relay starts at the newest stored caption, so nothing said
            # before is posted again, and what comes after is posted once.
            async with plenary_irc(configured) as base:
                await probe(base, observer, "again")
                async with aiohttp.ClientSession() as http:
                    await post(http, base, "Lee", "z1", "z2")
                await observer.wait_for(lambda: words(observer)[-2:] == ["z1", "z2"], 30)
                await asyncio.sleep(1.0)  # anything repeated would arrive now
        finally:
            await observer.close()
    after = words(observer)[len(before) :]
    assert set(after[:-2]) == {"again"} and after[-2:] == ["z1", "z2"]
    relayed = [w for w in before if w != "probe"]
    assert relayed == expected  # each final once, in the orchestrator's order
