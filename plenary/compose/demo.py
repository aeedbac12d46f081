"""``plenary demo``: a captioned meeting on one machine, from real recordings.

A captioner and the orchestrator start on free loopback ports (the orchestrator
with a temporary database); each speaker joins over the vosk websocket protocol as
Jigasi would (one socket each, audio all the time, silence while others talk) and
real recordings play at real-time pace. Captions take the whole path: captioner →
delivery over HTTP (POST /api/v1/captions) → the orchestrator's store → its SSE
stream, which the demo prints as IRC lines (on a terminal the current partial is shown
in place) while the captions page and the ``curl -N`` text stream show the same lines.
When ``irc.rooms`` names the room ``demo``, the IRC relay reads that same stream, as it
does under ``plenary serve`` (plenary.compose.relay), and posts the finals into its
channel.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import secrets
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import soxr
from aiohttp import web

from bots.captioner.app import create_app
from bots.captioner.audio import decode_file
from bots.irc.source import SseParser
from orchestrator.app import create_app as create_orchestrator
from orchestrator.irc_channels import with_relay_reader
from plenary.compose.relay import run_relay
from plenary.corpus import CorpusMissing, Utterance, load_corpus
from plenary.events import CaptionEvent
from plenary.scoring import cer
from plenary.settings import Settings
from plenary.wire import WireError, served_caption

RATE = 16000
FRAME_SECONDS = 0.2
GAP_SECONDS = 0.8  # pause between two speakers' turns


@dataclass
class Participant:
    name: str
    audio: np.ndarray  # the whole meeting from this participant's microphone


def plan_meeting(
    corpus: list[Utterance], speakers: int, utterances: int
) -> tuple[list[Participant], list[Utterance]]:
    """Speakers take turns; everyone's track is as long as the meeting."""
    by_speaker: dict[str, list[Utterance]] = {}
    for utt in corpus:
        by_speaker.setdefault(utt.speaker, []).append(utt)
    names = sorted(by_speaker)[:speakers]
    turns = [by_speaker[names[i % len(names)]][i // len(names)] for i in range(utterances)]
    clips = []
    for utt in turns:
        audio, rate = decode_file(utt.path)
        clips.append(soxr.resample(audio, rate, RATE).astype(np.int16))
    gap = np.zeros(int(GAP_SECONDS * RATE), dtype=np.int16)
    total = sum(len(c) + len(gap) for c in clips) + len(gap)
    tracks = {name: np.zeros(total, dtype=np.int16) for name in names}
    pos = len(gap)
    for utt, clip in zip(turns, clips, strict=True):
        tracks[utt.speaker][pos : pos + len(clip)] = clip
        pos += len(clip) + len(gap)
    return [Participant(n, t) for n, t in tracks.items()], turns


async def speak(url: str, who: Participant, pace: bool) -> None:
    """Stream one participant's microphone over the vosk protocol, as Jigasi does."""
    step = int(FRAME_SECONDS * RATE)
    loop = asyncio.get_running_loop()
    started = loop.time()
    query = f"?room=demo&speaker={who.name}&lang=ko"
    async with aiohttp.ClientSession() as session, session.ws_connect(url + query) as ws:
        await ws.send_str(f'{{"config" : {{"sample_rate" : {RATE}}}}}')
        for n, i in enumerate(range(0, len(who.audio), step)):
            if pace:
                await asyncio.sleep(max(0.0, started + n * FRAME_SECONDS - loop.time()))
            await ws.send_bytes(who.audio[i : i + step].tobytes())
            await ws.receive_str()
        await ws.send_str('{"eof" : 1}')
        await ws.receive_str()


class Printer:
    """Finals as IRC lines; the latest partial redrawn in place on a terminal."""

    def __init__(self, started: dt.datetime, tty: bool) -> None:
        self.started = started
        self.tty = tty
        self.finals: list[CaptionEvent] = []

    def show(self, event: CaptionEvent) -> None:
        at = (self.started + dt.timedelta(seconds=event.start)).strftime("%H:%M:%S")
        line = f"[{at}] <{event.speaker}> {event.text}"
        if event.is_final:
            self.finals.append(event)
            print(f"\r\x1b[K{line}" if self.tty else line, flush=True)
        elif self.tty:
            width = 120
            print(f"\r\x1b[K\x1b[2m{line[:width]}…\x1b[0m", end="", flush=True)


async def show_all(response: aiohttp.ClientResponse, printer: Printer) -> None:
    """Print the room's SSE stream, the same numbered finals (and partials) any consumer
    reads; one event that does not fit the served schema is skipped, the rest shown."""
    parser = SseParser()
    async for chunk in response.content.iter_any():
        for message in parser.feed(chunk):
            if message.event not in ("caption", "partial"):
                continue
            try:
                printer.show(_event(message.data, printer.started))
            except WireError as exc:
                print(f"demo: skipped a caption the stream sent: {exc}", file=sys.stderr)


async def demo(settings: Settings, speakers: int, utterances: int, pace: bool) -> int:
    try:
        corpus = load_corpus(settings.speech_dir, "ko")
    except CorpusMissing as exc:
        print(f"plenary demo: {exc}", file=sys.stderr)
        return 2
    participants, turns = plan_meeting(corpus, speakers, utterances)
    settings = with_relay_reader(settings)  # the relay reads the orchestrator as plenary serve's
    workdir = tempfile.TemporaryDirectory(prefix="plenary-demo-")
    token = secrets.token_urlsafe(16)
    admin = secrets.token_urlsafe(16)
    orchestrator = settings.model_copy(
        update={
            "orchestrator": settings.orchestrator.model_copy(
                update={"database": Path(workdir.name) / "demo.sqlite3", "admin_token": admin}
            ),
            "captions": settings.captions.model_copy(update={"producers": {"demo": token}}),
        }
    )
    orunner, base = await start_orchestrator(orchestrator)
    # The captioner delivers to the orchestrator over HTTP, as it does in production.
    captioner = settings.model_copy(
        update={
            "captioner": settings.captioner.model_copy(
                update={"orchestrator_url": base, "orchestrator_token": token}
            )
        }
    )
    runner = web.AppRunner(create_app(captioner), access_log=None)
    print("loading the Korean Vosk model…", file=sys.stderr)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    url = f"ws://127.0.0.1:{port}/"
    seconds = len(participants[0].audio) / RATE
    print(
        f"captioner on {url} — {len(participants)} speakers, {len(turns)} utterances, "
        f"{seconds:.0f} s of meeting{' at real-time pace' if pace else ''}\n",
        file=sys.stderr,
    )
    printer = Printer(dt.datetime.now(), sys.stdout.isatty())
    print(
        f"captions page: {base}/r/demo/captions\n"
        f"in a terminal: curl -N {base}/r/demo/captions.txt\n",
        file=sys.stderr,
    )
    stream = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
    response = await stream.get(f"{base}/r/demo/captions/stream?partials=1&after=0")

    tasks = [asyncio.create_task(show_all(response, printer))]
    irc_rooms = [r for r in settings.irc.rooms if r.room == "demo"]
    if irc_rooms:
        print(f"relaying captions to IRC {irc_rooms[0].channel}", file=sys.stderr)
        tasks.append(asyncio.create_task(run_relay(settings, base)))
    try:
        await asyncio.gather(*(speak(url, p, pace) for p in participants))
        await asyncio.sleep(3 if irc_rooms else 0.5)  # let the store, streams and relay drain
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        response.close()
        await stream.close()
        await runner.cleanup()  # delivers what is still queued first
        await orunner.cleanup()
        workdir.cleanup()
    heard = " ".join(e.text for e in printer.finals)
    said = " ".join(u.text for u in turns)
    print(
        f"\n{len(printer.finals)} captions from {len(turns)} utterances; "
        f"character error rate against the reference transcripts: {cer([(said, heard)]):.1%}",
        file=sys.stderr,
    )
    return 0 if printer.finals else 1


async def start_orchestrator(settings: Settings) -> tuple[web.AppRunner, str]:
    """The orchestrator on a free loopback port, with the room ``demo``; its runner and URL."""
    runner = web.AppRunner(create_orchestrator(settings), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    await create_room(base, settings.orchestrator.admin_token)
    return runner, base


async def create_room(base: str, admin: str) -> None:
    """The public room ``demo`` (captions for rooms it does not know the orchestrator
    refuses), recorded for a day, made over the rooms API as an organizer would."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    room = {
        "slug": "demo", "title": "Plenary demo", "languages": ["ko"],
        "schedule": {"start": now.isoformat(), "end": (now + dt.timedelta(hours=2)).isoformat(),
                     "timezone": "UTC"},
        "policy": {"access": [{"kind": "anyone"}], "moderators": []},
        "transcript_retention_days": 1,
    }  # fmt: skip
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {admin}"}
        async with http.post(f"{base}/api/v1/rooms", json=room, headers=headers) as response:
            if response.status != 201:
                raise RuntimeError(f"the demo room was refused: {await response.text()}")


def _event(data: str | bytes | Mapping[str, Any], started: dt.datetime) -> CaptionEvent:
    """A served caption (an SSE ``data:``, as text or decoded) as an event on the meeting's
    clock, for the Printer. Read by ``plenary.wire.ServedCaption``: ``WireError`` (a
    ValueError) naming the bad field when it is not one."""
    event = served_caption(data).event(zero_s=started.timestamp())
    return replace(event, start=max(0.0, event.start))


def run(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(demo(settings, args.speakers, args.utterances, not args.fast))
