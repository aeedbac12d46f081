"""Capacity: N concurrent streams of real Korean speech, paced at real time and as fast as
possible (waiting for each reply like test.py).

A stream is a sequence of utterances, each on its own websocket (config, 0.2 s frames of
16 kHz audio, eof, final) started as soon as the previous one's final arrived.

``python -m bench.capacity --peer ws://127.0.0.1:PORT --peer-pid PID`` runs the real-time
points N = 8, 12, 16 side by side with the peer, then the M = 100 meeting on the same
Plenary process, for its RSS after the capacity runs (docs/benchmarks.md, "Live speakers").
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench import audio, meeting
from bench.client import StreamResult, stream_paced, stream_sync
from bench.server import Target, Watch, check_local, plenary_server, settle_all
from bench.stats import percentile, table
from plenary.scoring import cer
from plenary.settings import Settings, load_settings

RATE = 16000
FRAME_SECONDS = 0.2
# Replies to frames sent this long after the start are the "steady" lag: the first
# seconds, when every speaker starts at once on recognizers not yet warm for them,
# are reported apart (docs/benchmarks.md, "Live speakers per core").
STEADY_AFTER = 15.0
MODES = ("realtime", "fast")


def playlists(clips: list[audio.Clip], streams: int, seconds: float) -> list[list[audio.Clip]]:
    """Stream i starts ``i * len / streams`` into the corpus and plays on for ``seconds``."""
    out = []
    for i in range(streams):
        start = i * len(clips) // streams
        playlist: list[audio.Clip] = []
        total = 0.0
        k = start
        while total < seconds and len(playlist) < len(clips):
            clip = clips[k % len(clips)]
            playlist.append(clip)
            total += clip.seconds
            k += 1
        out.append(playlist)
    return out


async def _play(
    session: aiohttp.ClientSession, url: str, playlist: list[audio.Clip], mode: str
) -> list[tuple[audio.Clip, StreamResult]]:
    out = []
    for clip in playlist:
        frames = audio.frames(clip.pcm, RATE, FRAME_SECONDS)
        if mode == "fast":
            result = await stream_sync(session, url, RATE, frames)
        else:
            result = await stream_paced(session, url, RATE, frames, frame_seconds=FRAME_SECONDS)
        out.append((clip, result))
    return out


async def run_one(target: Target, lists: list[list[audio.Clip]], mode: str) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=0)
    load_before = os.getloadavg()[0]
    async with aiohttp.ClientSession(connector=connector) as session, Watch(target.pid) as watch:
        started = time.monotonic()
        played = await asyncio.gather(
            *(_play(session, target.stream_url(), pl, mode) for pl in lists)
        )
        wall = time.monotonic() - started
        rss_end = watch.rss_mib()
    results = [r for stream in played for r in stream]
    lags = [lag for _, r in results for lag in r.reply_lags()]
    steady = [
        lag
        for _, r in results
        for sent, lag in zip(r.sent, r.reply_lags(), strict=False)
        if sent - started >= STEADY_AFTER
    ]
    steady_eofs = [
        lat
        for _, r in results
        if r.eof_sent is not None
        and r.eof_sent - started >= STEADY_AFTER
        and (lat := r.eof_latency()) is not None
    ]
    eofs = [lat for _, r in results if (lat := r.eof_latency()) is not None]
    seconds = sum(r.audio_seconds for _, r in results)
    return {
        "target": target.name,
        "streams": len(lists),
        "mode": mode,
        "audio_seconds": seconds,
        "wall_seconds": wall,
        "xrt": seconds / wall if wall else None,
        "reply_lag_p50": percentile(lags, 50),
        "reply_lag_p95": percentile(lags, 95),
        "steady_lag_p95": percentile(steady, 95),
        "steady_eof_final_p95": percentile(steady_eofs, 95),
        "eof_final_p50": percentile(eofs, 50),
        "eof_final_p95": percentile(eofs, 95),
        "utterances": len(results),
        "errors": sum(1 for _, r in results if r.error),
        "first_error": next((r.error for _, r in results if r.error), None),
        "cer": cer((c.text, " ".join(r.texts())) for c, r in results),
        "server_cpu_seconds": watch.cpu_used(),
        "cpu_per_audio_second": (cpu / seconds) if (cpu := watch.cpu_used()) and seconds else None,
        "peak_rss_mib": watch.peak_mib(),
        "end_rss_mib": rss_end,
        "load_before": load_before,  # 1-minute load average: other work on the machine
        "load_after": os.getloadavg()[0],
    }


async def run(
    targets: list[Target],
    settings: Settings,
    quick: bool,
    streams: list[int],
    seconds: float,
    modes: tuple[str, ...] = MODES,
) -> dict[str, Any]:
    clips = audio.clips(audio.corpus(settings, "ko"), RATE)
    results = []
    for n in streams:
        lists = playlists(clips, n, seconds)
        for mode in modes:
            for target in targets:
                print(f"capacity: {target.name} N={n} {mode} …", flush=True)
                waited = await settle_all(targets)
                results.append({**await run_one(target, lists, mode), "settle_seconds": waited})
    return {"results": results, "seconds_per_stream": seconds}


def report(data: dict[str, Any]) -> str:
    headers = [
        "mode",
        "N",
        "server",
        "xRT total",
        "lag p50 s",
        "lag p95 s",
        f"lag p95 after {STEADY_AFTER:.0f} s",
        "eof→final p50 s",
        "eof→final p95 s",
        f"eof→final p95 after {STEADY_AFTER:.0f} s",
        "CER %",
        "errors",
        "srv CPU s",
        "CPU s / audio s",
        "peak RSS MiB",
        "load",
    ]
    rows = [
        [
            r["mode"],
            r["streams"],
            r["target"],
            r["xrt"],
            r["reply_lag_p50"],
            r["reply_lag_p95"],
            r.get("steady_lag_p95"),
            r["eof_final_p50"],
            r["eof_final_p95"],
            r.get("steady_eof_final_p95"),
            100 * r["cer"],
            r["errors"],
            r["server_cpu_seconds"],
            r.get("cpu_per_audio_second"),
            r["peak_rss_mib"],
            r.get("load_before"),
        ]
        for r in sorted(data["results"], key=lambda r: (r["mode"], r["streams"], r["target"]))
    ]
    return table(
        headers,
        rows,
        f"== capacity (≈{data['seconds_per_stream']:.0f} s of speech per stream) ==",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__)
    parser.add_argument("--peer", help="ws://127.0.0.1:PORT of another vosk-protocol server")
    parser.add_argument("--peer-pid", type=int, help="the peer's process id (RSS, CPU)")
    parser.add_argument("--peer-name", default="vosk-server")
    parser.add_argument("--streams", default="8,12,16", help="N values (8,12,16)")
    parser.add_argument("--stream-seconds", type=float, default=40.0)
    parser.add_argument("--modes", default="realtime", help="realtime,fast")
    parser.add_argument("--meeting", type=int, default=100, help="M afterwards (0: none)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.peer:
        check_local(args.peer)
    peer = [Target(args.peer_name, args.peer, args.peer_pid)] if args.peer else []
    settings = load_settings()
    streams = [int(x) for x in args.streams.split(",")]
    modes = tuple(args.modes.split(","))
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    doc: dict[str, Any] = {"started": started, "argv": sys.argv}
    with plenary_server() as (plenary, _proc):
        targets = [plenary, *peer]
        doc["capacity"] = asyncio.run(
            run(targets, settings, False, streams, args.stream_seconds, modes)
        )
        print(report(doc["capacity"]), flush=True)
        if args.meeting:
            # The same Plenary process: its memory after the capacity runs is the point.
            doc["meeting_after"] = asyncio.run(meeting.run([plenary], settings, [args.meeting], 12))
            print(meeting.report(doc["meeting_after"]), flush=True)
    doc["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    if args.out:
        args.out.write_text(json.dumps(doc, indent=1, ensure_ascii=False, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
