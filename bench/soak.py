"""Soak: the whole caption path under mixed load for ~10 minutes (issue 14).

The split topology of ``bench delivery`` (orchestrator, captioner delivering to it, IRC
relay, real ngircd, all on loopback) under, at once:

- one Jitsi bridge session of 24 participants (MediaJson Opus of real Korean speech, one
  speaker at a time, six others sending ``vad: false`` packets, ``sendBack``);
- 50 vosk clients that join, stay silent a while, say one utterance, send eof and leave,
  and join again;
- 20 SSE readers of the room that drop their connection at random and resume with
  ``Last-Event-ID``;
- an independent IRC client in the relay's channel, counting lines.

Every 5 s the captioner's RSS, streams and recognizers in use (from /healthz) and the
other processes' RSS are sampled. At the end: finals produced (sendBack results and vosk
replies) against those stored, what each SSE reader lost or saw twice, IRC lines,
caption latency (speech end → sent back, → SSE, → IRC; vosk eof → final).

    .venv/bin/python -m bench soak [--duration 600]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.bridge import last_speech_frame, silent_payload
from bench.delivery import ROOM, IrcWatcher, Topology, machine
from bench.harness.audio import read_pcm
from bench.harness.opus_frames import FRAME, FakeBridge
from bench.server import proc_status, wait_healthy
from bench.stats import percentile
from plenary.corpus import load_corpus
from plenary.settings import load_settings

PARTICIPANTS = 24
SENDING_SILENCE = 6  # participants whose bridge sends vad:false packets while others speak
VOSK_CLIENTS = 50
SSE_READERS = 20
PAUSE = 1.5  # between two bridge turns
SAMPLE_EVERY = 5.0
CHUNK = 3200  # 0.1 s of 16 kHz audio per vosk frame


@dataclass
class Record:
    """What the load generators saw."""

    t0: float = field(default_factory=time.monotonic)
    bridge_marks: list[tuple[str, float]] = field(default_factory=list)  # tag, speech end
    bridge_back: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    vosk_finals: list[tuple[str, str]] = field(default_factory=list)  # speaker, text
    vosk_latency: list[float] = field(default_factory=list)  # speech end → final reply
    vosk_joins: int = 0
    vosk_refused: int = 0
    sse_seen: list[Counter[int]] = field(default_factory=list)
    sse_first: dict[str, float] = field(default_factory=dict)  # message id → first arrival
    sse_reconnects: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)


async def bridge_meeting(address: str, clips: list[bytes], until: float, rec: Record) -> int:
    """Turns of the 24 participants until ``until``; returns utterances spoken."""
    fake = FakeBridge()
    tags = [f"{n + 1:08x}-a0" for n in range(PARTICIPANTS)]
    payload = silent_payload()
    url = f"ws://{address}/transcribe?sessionId=soak&room={ROOM}&sendBack=true&lang=ko"
    turns = 0
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:

        async def read() -> None:
            async for msg in ws:
                data = json.loads(msg.data)
                if data.get("type") == "transcription-result" and not data["is_interim"]:
                    rec.bridge_back.append((time.monotonic(), data))

        reader = asyncio.create_task(read())
        for tag in tags:
            await ws.send_str(fake.start(tag))
        while time.monotonic() < until:
            tag = tags[turns % PARTICIPANTS]
            pcm = clips[turns % len(clips)]
            packets = fake.speech(tag, pcm, silence="dtx")
            last = last_speech_frame(pcm) * FRAME / 48000
            others = [t for t in tags if t != tag][:SENDING_SILENCE]
            ticks = int((len(pcm) / 96000 + PAUSE) / 0.02)
            begin, pos, mark = time.monotonic(), 0, 0.0
            for tick in range(ticks):
                delay = begin + tick * 0.02 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                while pos < len(packets) and packets[pos][0] <= tick * 0.02:
                    await ws.send_str(packets[pos][1])
                    if packets[pos][0] <= last + 1e-9:
                        mark = time.monotonic()
                    pos += 1
                for other in others:
                    await ws.send_str(fake.media(other, payload, silent=True))
            rec.bridge_marks.append((tag, mark))
            turns += 1
        await asyncio.sleep(3.0)
        await ws.send_str(json.dumps({"event": "session-end"}))
        await asyncio.sleep(1.0)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    return turns


async def vosk_client(n: int, address: str, clips: list[bytes], until: float, rec: Record) -> None:
    """Join, silence, one utterance, eof, leave; again until ``until``."""
    rnd = random.Random(n)
    speaker = f"caller{n:02d}"
    async with aiohttp.ClientSession() as http:
        await asyncio.sleep(rnd.uniform(0, 20))
        while time.monotonic() < until:
            clip = clips[rnd.randrange(len(clips))]
            # Mostly silent: 50 clients on 2 cores, about three speaking at any time.
            quiet = bytes(CHUNK * int(rnd.uniform(60, 120) * 10))
            audio = quiet + clip + bytes(CHUNK * 10)
            speech_end = len(quiet) + len(clip)
            ended_at: float | None = None
            try:
                async with http.ws_connect(f"ws://{address}/?room={ROOM}&speaker={speaker}") as ws:
                    rec.vosk_joins += 1
                    await ws.send_str(json.dumps({"config": {"sample_rate": 16000}}))
                    begin = time.monotonic()
                    for i in range(0, len(audio), CHUNK):
                        if i < speech_end and time.monotonic() > until:
                            break  # the soak is over: say nothing more, leave
                        delay = begin + i / 32000 - time.monotonic()
                        if delay > 0:
                            await asyncio.sleep(delay)
                        await ws.send_bytes(audio[i : i + CHUNK])
                        if ended_at is None and i + CHUNK >= speech_end:
                            ended_at = time.monotonic()
                        msg = await ws.receive(timeout=60)
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            rec.vosk_refused += 1
                            break
                        if final_texts(json.loads(msg.data), speaker, rec) and ended_at:
                            rec.vosk_latency.append(time.monotonic() - ended_at)
                            ended_at = None
                    else:
                        await ws.send_str('{"eof" : 1}')
                        msg = await ws.receive(timeout=60)
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            final_texts(json.loads(msg.data), speaker, rec)
            except (aiohttp.ClientError, OSError, TimeoutError):
                rec.vosk_refused += 1
            await asyncio.sleep(rnd.uniform(1, 5))


def final_texts(reply: dict[str, Any], speaker: str, rec: Record) -> bool:
    """A vosk reply's final (``{"text": ...}``, or the best of ``alternatives``), if any."""
    text = reply.get("text") or (reply.get("alternatives") or [{}])[0].get("text")
    if text:
        rec.vosk_finals.append((speaker, text))
    return bool(text)


async def sse_reader(url: str, done: asyncio.Event, seed: int, rec: Record) -> None:
    rnd = random.Random(1000 + seed)
    seen: Counter[int] = Counter()
    rec.sse_seen.append(seen)
    last = 0
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        while not done.is_set():
            hold = rnd.uniform(2, 40)
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with asyncio.timeout(hold):
                    stream = f"{url}/r/{ROOM}/captions/stream"
                    async with http.get(stream, headers={"Last-Event-ID": str(last)}) as r:
                        async for raw in r.content:
                            line = raw.decode()
                            if line.startswith("data: "):
                                caption = json.loads(line[6:])
                                seq = int(caption["seq"])
                                seen[seq] += 1
                                last = max(last, seq)
                                rec.sse_first.setdefault(caption["message_id"], time.monotonic())
            rec.sse_reconnects += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), rnd.uniform(0, 2))
        # The end: one last read of everything after ``last``, as a reader that stayed.
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            async with asyncio.timeout(3):
                stream = f"{url}/r/{ROOM}/captions/stream"
                async with http.get(stream, headers={"Last-Event-ID": str(last)}) as r:
                    async for raw in r.content:
                        line = raw.decode()
                        if line.startswith("data: "):
                            seen[int(json.loads(line[6:])["seq"])] += 1


async def sampler(top: Topology, address: str, until: float, rec: Record) -> None:
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < until:
            sample: dict[str, Any] = {"t": round(time.monotonic() - rec.t0, 1)}
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with http.get(f"http://{address}/healthz") as r:
                    health = await r.json()
                sample["streams"] = health["streams"]
                sample["recognizers_in_use"] = health["recognizers"]["in_use"]
                sample["recognizers_idle"] = health["recognizers"]["idle"]
            for name, proc in top.procs.items():
                sample[f"{name}_rss_mb"] = round(proc_status(proc.pid).get("VmRSS", 0) / 1024, 1)
            rec.samples.append(sample)
            await asyncio.sleep(SAMPLE_EVERY)


async def stored(url: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as http:
        while True:
            after = out[-1]["seq"] if out else 0
            async with http.get(
                f"{url}/api/v1/rooms/{ROOM}/captions?after={after}&limit=1000"
            ) as r:
                events: list[dict[str, Any]] = (await r.json())["events"]
            if not events:
                return out
            out += events


def latencies(rec: Record, irc: IrcWatcher) -> dict[str, list[float]]:
    """Per bridge utterance: from its last speech packet to the last of its finals sent
    back, seen on SSE and in IRC. Finals of a turn are those of its tag from shortly
    before its speech ended (Vosk may end one mid-clip) to the tag's next turn."""
    back, sse, to_irc = [], [], []
    for i, (tag, end) in enumerate(rec.bridge_marks):
        later = [m for t, m in rec.bridge_marks[i + 1 :] if t == tag]
        window_end = later[0] - 30 if later else float("inf")
        finals = [
            (at, r) for at, r in rec.bridge_back
            if r["participant"].get("tag") == tag and end - 30 <= at < window_end
        ]  # fmt: skip
        if not finals or max(at for at, _ in finals) < end:
            continue
        back.append(max(at for at, _ in finals) - end)
        arrivals = [rec.sse_first.get(r["message_id"]) for _, r in finals]
        if None not in arrivals:
            sse.append(max(a for a in arrivals if a is not None) - end)
        texts = [(at, r["transcript"][0]["text"][:20]) for at, r in finals]
        lines = [
            next((t for t, line in irc.lines if t >= at and x in line), None) for at, x in texts
        ]
        if None not in lines:
            to_irc.append(max(t for t in lines if t is not None) - end)
    return {"sendback": back, "sse": sse, "irc": to_irc, "vosk": rec.vosk_latency}


def accounting(rec: Record, captions: list[dict[str, Any]], irc: IrcWatcher) -> dict[str, Any]:
    ids = Counter(c["message_id"] for c in captions)
    bridge_ids = {r["message_id"] for _, r in rec.bridge_back}
    stored_by: dict[str, list[str]] = {}
    for c in captions:
        stored_by.setdefault(c["speaker"], []).append(c["text"])
    # A reply joins the finals of one frame when it held two: found if any stored text
    # of that caller is part of it.
    vosk_lost = sum(
        1
        for speaker, text in rec.vosk_finals
        if not any(t and t in text for t in stored_by.get(speaker, []))
    )
    seqs = {c["seq"] for c in captions}
    irc_text = "\n".join(line for _, line in irc.lines)
    return {
        "finals_stored": len(captions),
        "bridge_finals_sent_back": len(bridge_ids),
        "bridge_lost": sum(1 for m in bridge_ids if m not in ids),
        "vosk_finals_replied": len(rec.vosk_finals),
        "vosk_lost": vosk_lost,
        "stored_duplicated": sum(n - 1 for n in ids.values()),
        "sse_readers": len(rec.sse_seen),
        "sse_reconnects": rec.sse_reconnects,
        "sse_lost": sum(len(seqs - set(seen)) for seen in rec.sse_seen),
        "sse_duplicated": sum(n - 1 for seen in rec.sse_seen for n in seen.values()),
        "irc_lines": len(irc.lines),
        "irc_missing": sum(1 for c in captions if c["text"][:20] not in irc_text),
    }


async def run(quick: bool, duration: float | None = None) -> dict[str, Any]:
    seconds = duration if duration is not None else (60.0 if quick else 600.0)
    settings = load_settings()
    corpus = load_corpus(settings.speech_dir, "ko")
    clips48 = [read_pcm(u.path, 48000)[0] for u in corpus[1:37:3]]
    clips16 = [read_pcm(u.path, 16000)[0] for u in corpus[2:38:3]]
    rec = Record()
    with tempfile.TemporaryDirectory(prefix="plenary-bench-soak-") as tmp:
        top = Topology(Path(tmp))
        irc = IrcWatcher()
        try:
            top.start_ngircd()
            top.start_orchestrator()
            top.start_captioner()
            await wait_healthy(f"{top.url}/healthz", top.procs["orchestrator"], 60)
            address = f"127.0.0.1:{top.captioner_port}"
            await wait_healthy(f"http://{address}/healthz", top.procs["captioner"], 120)
            await irc.start(top.irc_port)
            top.start_relay()
            await asyncio.sleep(3.0)  # the relay registers and joins
            rec.t0 = time.monotonic()
            until = rec.t0 + seconds
            done = asyncio.Event()
            sampling = asyncio.create_task(sampler(top, address, until + 60, rec))
            readers = [
                asyncio.create_task(sse_reader(top.url, done, n, rec)) for n in range(SSE_READERS)
            ]
            callers = [
                asyncio.create_task(vosk_client(n, address, clips16, until, rec))
                for n in range(VOSK_CLIENTS)
            ]
            turns = await bridge_meeting(address, clips48, until, rec)
            await asyncio.gather(*callers)
            await asyncio.sleep(10.0)  # the last finals reach SSE and IRC
            done.set()
            await asyncio.gather(*readers)
            await asyncio.sleep(max(0.0, until + 60 - time.monotonic()))  # RSS after the load
            await sampling
            captions = await stored(top.url)
            result = {
                "turns": turns,
                "vosk_joins": rec.vosk_joins,
                "vosk_refused": rec.vosk_refused,
                **accounting(rec, captions, irc),
            }
            lat = {k: summary(v) for k, v in latencies(rec, irc).items()}
        finally:
            await irc.stop()
            top.stop()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "seconds": seconds,
        "result": result,
        "latency": lat,
        "samples": rec.samples,
    }


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values) if values else None,
    }


def report(data: dict[str, Any]) -> str:
    def f(value: Any) -> str:
        return "-" if value is None else f"{value:.2f}"

    r = data["result"]
    samples = data["samples"]
    lines = [
        f"soak ({data['date']}, {data['machine']}), {data['seconds']:.0f} s: bridge M = "
        f"{PARTICIPANTS} ({r['turns']} turns), {VOSK_CLIENTS} vosk clients "
        f"({r['vosk_joins']} joins, {r['vosk_refused']} refused or broken), "
        f"{SSE_READERS} SSE readers ({r['sse_reconnects']} reconnects), IRC",
        f"  finals stored {r['finals_stored']}: bridge {r['bridge_finals_sent_back']} sent back, "
        f"lost {r['bridge_lost']}; vosk {r['vosk_finals_replied']} replied, lost "
        f"{r['vosk_lost']}; duplicated in store {r['stored_duplicated']}",
        f"  SSE readers: lost {r['sse_lost']}, duplicated {r['sse_duplicated']}; IRC lines "
        f"{r['irc_lines']}, captions not found in IRC {r['irc_missing']}",
    ]
    for name, s in data["latency"].items():
        lines.append(
            f"  latency {name}: n {s['n']}, p50 {f(s['p50'])} s, p95 {f(s['p95'])} s, "
            f"max {f(s['max'])} s"
        )
    lines.append("  t(s)  captioner RSS MB  orchestrator RSS MB  relay RSS MB  streams  in use")
    step = max(1, len(samples) // 12)
    for s in [*samples[::step], samples[-1]] if samples else []:
        lines.append(
            f"  {s['t']:5.0f}  {s.get('captioner_rss_mb', 0):16.0f}  "
            f"{s.get('orchestrator_rss_mb', 0):19.0f}  {s.get('relay_rss_mb', 0):12.0f}  "
            f"{s.get('streams', '-')!s:>7}  {s.get('recognizers_in_use', '-')!s:>6}"
        )
    return "\n".join(lines)
