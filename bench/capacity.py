"""Capacity: N concurrent streams of real Korean speech, paced at real time and as fast as
possible (waiting for each reply like test.py).

A stream is a sequence of utterances, each on its own websocket (config, 0.2 s frames of
16 kHz audio, eof, final) started as soon as the previous one's final arrived.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from bench import audio
from bench.client import StreamResult, stream_paced, stream_sync
from bench.server import Target, Watch, settle_all
from bench.stats import percentile, table
from plenary.scoring import cer
from plenary.settings import Settings

RATE = 16000
FRAME_SECONDS = 0.2
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
    async with aiohttp.ClientSession(connector=connector) as session, Watch(target.pid) as watch:
        started = time.monotonic()
        played = await asyncio.gather(
            *(_play(session, target.stream_url(), pl, mode) for pl in lists)
        )
        wall = time.monotonic() - started
        rss_end = watch.rss_mib()
    results = [r for stream in played for r in stream]
    lags = [lag for _, r in results for lag in r.reply_lags()]
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
        "eof_final_p50": percentile(eofs, 50),
        "eof_final_p95": percentile(eofs, 95),
        "utterances": len(results),
        "errors": sum(1 for _, r in results if r.error),
        "first_error": next((r.error for _, r in results if r.error), None),
        "cer": cer((c.text, " ".join(r.texts())) for c, r in results),
        "server_cpu_seconds": watch.cpu_used(),
        "peak_rss_mib": watch.peak_mib(),
        "end_rss_mib": rss_end,
    }


async def run(
    targets: list[Target],
    settings: Settings,
    quick: bool,
    streams: list[int],
    seconds: float,
) -> dict[str, Any]:
    clips = audio.clips(audio.corpus(settings, "ko"), RATE)
    results = []
    for n in streams:
        lists = playlists(clips, n, seconds)
        for mode in MODES:
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
        "eof→final p95 s",
        "CER %",
        "errors",
        "srv CPU s",
        "peak RSS MiB",
    ]
    rows = [
        [
            r["mode"],
            r["streams"],
            r["target"],
            r["xrt"],
            r["reply_lag_p50"],
            r["reply_lag_p95"],
            r["eof_final_p95"],
            100 * r["cer"],
            r["errors"],
            r["server_cpu_seconds"],
            r["peak_rss_mib"],
        ]
        for r in sorted(data["results"], key=lambda r: (r["mode"], r["streams"]))
    ]
    return table(
        headers,
        rows,
        f"== capacity (≈{data['seconds_per_stream']:.0f} s of speech per stream) ==",
    )
