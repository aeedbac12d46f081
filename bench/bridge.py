"""Benchmark: a Jitsi meeting through the captioner's /transcribe endpoint (issue 4).

Starts ``plenary captioner serve`` on a free loopback port, then plays one meeting per
size M: M participants on one bridge socket, one speaking at a time (Korean utterances
as 20 ms Opus packets), the others silent as a bridge sends them — even-numbered ones
muted or in DTX (no packets), odd-numbered ones unmuted with ``"vad": false`` packets
50 times a second. Measures the final caption's latency from the last speech packet,
pong latency under that load, and the server's memory.

    .venv/bin/python -m bench.bridge          # M = 4, 24, 100; writes docs/benchmarks-bridge.md
    .venv/bin/python -m bench.bridge --quick  # M = 4, 24
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import opuslib

from bench.harness.audio import read_pcm
from bench.harness.opus_frames import FRAME, FakeBridge
from bench.server import free_port, proc_status, wait_healthy
from bench.stats import percentile
from plenary.corpus import load_corpus
from plenary.settings import PROJECT_ROOT, load_settings

PAUSE = 1.5  # seconds between one speaker's last packet and the next speaker's first
SPEECH_DBFS = -40.0  # a 20 ms frame this loud is speech (for "the last speech packet")
REPORT = PROJECT_ROOT / "docs" / "benchmarks-bridge.md"


def last_speech_frame(pcm: bytes) -> int:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    n = len(samples) // FRAME
    rms = np.sqrt(np.mean(samples[: n * FRAME].reshape(n, FRAME) ** 2, axis=1))
    loud = np.nonzero(20 * np.log10(np.maximum(rms, 1.0) / 32768) > SPEECH_DBFS)[0]
    return int(loud[-1]) if len(loud) else n - 1


def silent_payload() -> str:
    encoder = opuslib.Encoder(48000, 1, opuslib.APPLICATION_VOIP)
    return base64.b64encode(encoder.encode(b"\0" * FRAME * 2, FRAME)).decode("ascii")


async def meeting(url: str, pid: int, m: int, clips: list[bytes]) -> dict[str, Any]:
    fake = FakeBridge()
    tags = [f"{n + 1:08x}-a0" for n in range(m)]
    speakers = [tags[k % m] for k in range(len(clips))]
    frames: list[tuple[float, str]] = [(0.0, fake.start(tag)) for tag in tags]
    # Speech: utterance k by speakers[k]; remember which frame is its last speech packet.
    marks: list[tuple[str, int, float]] = []  # (tag, index of its last speech frame, start)
    at = 0.5
    for tag, pcm in zip(speakers, clips, strict=True):
        packets = fake.speech(tag, pcm, silence="dtx")
        last = last_speech_frame(pcm) * FRAME / 48000
        idx = max(i for i, (t, _) in enumerate(packets) if t <= last + 1e-9)
        marks.append((tag, len(frames) + idx, at))
        frames += [(at + t, f) for t, f in packets]
        at += len(pcm) / 2 / 48000 + PAUSE
    duration = at
    order = sorted(range(len(frames)), key=lambda i: frames[i][0])
    # Unmuted silent participants: vad=false packets all along (merged in time order below).
    payload = silent_payload()
    talkers = set(speakers)
    unmuted = [t for n, t in enumerate(tags) if n % 2 == 1 and t not in talkers]
    ticks = int(duration / 0.02)

    sent_at: dict[int, float] = {}
    pings: dict[int, float] = {}
    pongs: dict[int, float] = {}
    finals: dict[str, list[float]] = defaultdict(list)
    rss_peak = 0

    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{url}?sessionId=bench-{m}-{time.time_ns()}&sendBack=true") as ws,
    ):

        async def read() -> None:
            async for msg in ws:
                data = json.loads(msg.data)
                now = time.monotonic()
                if data.get("event") == "pong":
                    pongs[data["id"]] = now
                elif data.get("type") == "transcription-result" and not data["is_interim"]:
                    finals[data["participant"]["tag"]].append(now)

        reader = asyncio.create_task(read())
        begin = time.monotonic()
        pos = 0
        for tick in range(ticks + int(3 / 0.02)):
            due = begin + tick * 0.02
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            offset = tick * 0.02
            while pos < len(order) and frames[order[pos]][0] <= offset:
                i = order[pos]
                await ws.send_str(frames[i][1])
                sent_at[i] = time.monotonic()
                pos += 1
            if tick < ticks:
                for tag in unmuted:
                    await ws.send_str(fake.media(tag, payload, silent=True))
            if tick % 50 == 0:  # a ping a second (the bridge sends one every 10 s)
                pings[tick] = time.monotonic()
                await ws.send_str(json.dumps({"event": "ping", "id": tick}))
                rss_peak = max(rss_peak, proc_status(pid).get("VmRSS", 0))
        await asyncio.sleep(2.0)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader

    latencies = []
    missing = 0
    for k, (tag, idx, start) in enumerate(marks):
        last_packet = sent_at[idx]
        # The utterance's last final: from its speaker, before that speaker speaks again.
        nxt = next((marks[j][2] for j in range(k + 1, len(marks)) if marks[j][0] == tag), None)
        limit = begin + nxt if nxt is not None else float("inf")
        mine = [t for t in finals[tag] if begin + start <= t < limit]
        if mine:
            latencies.append(max(mine) - last_packet)
        else:
            missing += 1
    pong_ms = [(pongs[i] - pings[i]) * 1000 for i in pings if i in pongs]
    status = proc_status(pid)
    return {
        "participants": m,
        "unmuted_silent": len(unmuted),
        "utterances": len(clips),
        "finals_missing": missing,
        "final_p50_s": percentile(latencies, 50),
        "final_p95_s": percentile(latencies, 95),
        "final_max_s": max(latencies) if latencies else None,
        "pong_p95_ms": percentile(pong_ms, 95),
        "pongs_missing": len(pings) - len(pong_ms),
        "rss_peak_mib": rss_peak / 1024,
        "hwm_mib": status.get("VmHWM", 0) / 1024,
        "frames_per_s": (len(frames) + len(unmuted) * ticks) / duration,
    }


async def run(quick: bool) -> dict[str, Any]:
    settings = load_settings()
    corpus = load_corpus(settings.speech_dir, "ko")
    count = 4 if quick else 8
    clips = [read_pcm(u.path, 48000)[0] for u in corpus[1 : 1 + 3 * count : 3]]
    sizes = (4, 24) if quick else (4, 24, 100)
    port = free_port()
    exe = Path(sys.executable).with_name("plenary")
    cmd = [str(exe), "captioner", "serve", "--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "PLENARY_LOG_LEVEL": "WARNING"}
    # A Popen, as bench.server.wait_healthy polls it; starting it does not block.
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stderr=subprocess.DEVNULL)  # noqa: ASYNC220
    try:
        await wait_healthy(f"http://127.0.0.1:{port}/healthz", proc, 120)
        rows = []
        for m in sizes:
            row = await meeting(f"ws://127.0.0.1:{port}/transcribe", proc.pid, m, clips)
            print(json.dumps(row), flush=True)
            rows.append(row)
            await asyncio.sleep(3.0)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.node()}: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}",
        "quick": quick,
        "vad_silence_ms": settings.captioner.vad_silence_ms,
        "bridge_quiet_ms": settings.captioner.bridge_quiet_ms,
        "rows": rows,
    }


def report(data: dict[str, Any]) -> str:
    def f(value: Any, digits: int = 2) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [
        "# Benchmark: a Jitsi meeting through /transcribe",
        "",
        f"- Date: {data['date']}",
        f"- Machine: {data['machine']} — shared with other engineers' work while it ran,",
        "  so the numbers are pessimistic.",
        "- Command: `.venv/bin/python -m bench.bridge" + (" --quick`" if data["quick"] else "`"),
        "- One bridge socket per meeting; one participant speaks at a time (Korean "
        "utterances as 20 ms Opus packets at 32 kbps, DTX in silence); the other "
        "participants are silent: half send nothing (muted / DTX), half send "
        '`"vad": false` packets 50 times a second. Default settings '
        f"(`vad_silence_ms` = {data['vad_silence_ms']}, "
        f"`bridge_quiet_ms` = {data.get('bridge_quiet_ms', '-')}). A ping every second.",
        "- Final latency: from sending a speaker's last speech packet (last 20 ms frame above "
        f"{SPEECH_DBFS:g} dBFS) to receiving that utterance's last final result.",
        "",
        "| M | silent packets from | utterances | final p50 (s) | final p95 (s) | final max (s) "
        "| finals missing | pong p95 (ms) | pongs missing | frames/s in | RSS peak (MiB) "
        "| VmHWM (MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        lines.append(
            f"| {r['participants']} | {r['unmuted_silent']} | {r['utterances']} "
            f"| {f(r['final_p50_s'])} | {f(r['final_p95_s'])} | {f(r['final_max_s'])} "
            f"| {r['finals_missing']} | {f(r['pong_p95_ms'], 1)} | {r['pongs_missing']} "
            f"| {r['frames_per_s']:.0f} | {r['rss_peak_mib']:.0f} | {r['hwm_mib']:.0f} |"
        )
    lines += ["", "Goal: final p95 ≤ 1.0 s at M = 100.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="M = 4 and 24 only")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {REPORT.name}")
    args = parser.parse_args(argv)
    data = asyncio.run(run(args.quick))
    text = report(data)
    print(text)
    if not args.no_write:
        REPORT.parent.mkdir(exist_ok=True)
        REPORT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
