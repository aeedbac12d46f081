"""Caption fan-out benchmark: many SSE subscribers on one room, and bytes per minute.

    .venv/bin/python -m bench.sse            # 2,000 subscribers, 30 captions
    .venv/bin/python -m bench.sse --quick    # 200 subscribers, 10 captions

The orchestrator runs as its own process (``plenary serve --no-captioner``, a temp
database, a producer token) so its CPU and memory are measured apart from the
subscribers, which all live in this process on the same loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import soundfile as sf

from bench.harness import procs
from bench.server import free_port
from plenary.corpus import CorpusMissing, load_corpus
from plenary.settings import PROJECT_ROOT, load_settings

TOKEN = "bench-producer"
ROOM = "bench"
BW_ROOM = "bench-bw"
OPUS_AUDIO_BYTES_PER_MIN = 40_000 / 8 * 60  # ~40 kbit/s audio-only Jitsi participant


def _proc(pid: int) -> dict[str, float]:
    """CPU seconds (user+system) and memory (RSS, peak RSS) of a process, in MB."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    status = {
        line.split(":")[0]: line.split()[1]
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith(("VmRSS", "VmHWM"))
    }
    return {
        "cpu_s": (int(fields[11]) + int(fields[12])) / ticks,
        "rss_mb": int(status["VmRSS"]) / 1024,
        "peak_rss_mb": int(status["VmHWM"]) / 1024,
    }


class Server:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "PLENARY_ORCHESTRATOR__DATABASE": str(tmp / "bench.sqlite3"),
            "PLENARY_ORCHESTRATOR__PORT": str(self.port),
            "PLENARY_CAPTIONS__PRODUCER_TOKEN": TOKEN,
            "PLENARY_LOG_LEVEL": "WARNING",
        }
        plenary = Path(sys.executable).with_name("plenary")
        for room in (ROOM, BW_ROOM):  # public rooms: captions for unknown rooms are refused
            subprocess.run(
                [str(plenary), "rooms", "create", room, "--title", room, "--anyone",
                 "--start", "2030-01-01T10:00", "--end", "2030-01-01T11:00",
                 "--retention-days", "1"],  # recorded, as before
                env=env, cwd=tmp, check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
        self.proc = subprocess.Popen([str(plenary), "serve", "--no-captioner"], env=env, cwd=tmp)

    async def ready(self, http: aiohttp.ClientSession) -> None:
        for _ in range(200):
            try:
                async with http.get(f"{self.url}/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError("orchestrator did not start")

    def stop(self) -> None:
        procs.stop(self.proc)


async def _post(
    http: aiohttp.ClientSession, url: str, events: list[dict[str, Any]], room: str = ROOM
) -> None:
    async with http.post(
        f"{url}/api/v1/rooms/{room}/captions",
        json={"events": events},
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as r:
        assert r.status == 202, await r.text()


async def fan_out(
    server: Server, subscribers: int, captions: int, interval: float
) -> dict[str, Any]:
    received: dict[int, list[float]] = {}
    connected = 0
    all_in = asyncio.Event()
    done = asyncio.Event()

    async def subscriber(http: aiohttp.ClientSession) -> None:
        nonlocal connected
        async with http.get(f"{server.url}/r/{ROOM}/captions/stream") as r:
            first = True
            async for raw in r.content:
                if first:
                    first = False
                    connected += 1
                    if connected == subscribers:
                        all_in.set()
                if raw.startswith(b"id: "):
                    seq = int(raw[4:])
                    received.setdefault(seq, []).append(time.monotonic())
                    if seq == captions and len(received[seq]) == subscribers:
                        done.set()
                    if seq == captions:
                        return

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        tasks = [asyncio.create_task(subscriber(http)) for _ in range(subscribers)]
        await asyncio.wait_for(all_in.wait(), 120)
        await asyncio.sleep(1.0)  # every handler past its subscribe
        before = _proc(server.proc.pid)
        sent: dict[int, float] = {}
        async with aiohttp.ClientSession() as producer:
            for n in range(1, captions + 1):
                sent[n] = time.monotonic()
                await _post(
                    producer,
                    server.url,
                    [
                        {
                            "speaker": "김민지",
                            "text": f"{n} 안녕하세요 여러분, 오늘 회의를 시작하겠습니다.",
                        }
                    ],
                )
                await asyncio.sleep(interval)
        await asyncio.wait_for(done.wait(), 120)
        after = _proc(server.proc.pid)
        await asyncio.gather(*tasks, return_exceptions=True)
    last = sorted((max(received[n]) - sent[n]) * 1000 for n in sent)
    every = sorted((t - sent[n]) * 1000 for n in sent for t in received[n])
    complete = all(len(received.get(n, ())) == subscribers for n in sent)
    return {
        "subscribers": subscribers,
        "captions": captions,
        "all_delivered": complete,
        "last_subscriber_ms": {
            "p50": round(statistics.median(last), 1),
            "p95": round(_pct(last, 95), 1),
            "max": round(last[-1], 1),
        },
        "any_subscriber_ms": {
            "p50": round(statistics.median(every), 1),
            "p95": round(_pct(every, 95), 1),
        },
        "server_cpu_s_during_captions": round(after["cpu_s"] - before["cpu_s"], 2),
        "server_cpu_percent_during_captions": round(
            100 * (after["cpu_s"] - before["cpu_s"]) / (captions * interval + 0.001), 1
        ),
        "server_rss_mb_idle_subscribed": round(before["rss_mb"], 1),
        "server_peak_rss_mb": round(after["peak_rss_mb"], 1),
    }


def _pct(sorted_values: list[float], p: float) -> float:
    k = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def _speech() -> tuple[list[tuple[str, float]], float]:
    """(text, seconds) per utterance of the Korean reference speech, and minutes of meeting."""
    settings = load_settings()
    try:
        corpus = load_corpus(settings.speech_dir, "ko")
        utts = [(u.text, sf.info(str(u.path)).duration) for u in corpus]
    except CorpusMissing:
        utts = [("안녕하세요 여러분, 오늘 회의를 시작하겠습니다.", 3.0)] * 36
    minutes = sum(d + 0.8 for _, d in utts) / 60  # 0.8 s between turns, as the demo
    return utts, minutes


async def bandwidth(server: Server, heartbeat_s: float = 15.0) -> dict[str, Any]:
    """Bytes a subscriber receives per minute of speech, per stream kind."""
    utts, minutes = _speech()
    kinds = {
        "sse": f"/r/{BW_ROOM}/captions/stream",
        "sse_with_partials": f"/r/{BW_ROOM}/captions/stream?partials=1",
        "text": f"/r/{BW_ROOM}/captions.txt",
    }
    counts = dict.fromkeys(kinds, 0)
    headers_len: dict[str, int] = {}
    finished = asyncio.Event()

    async def reader(http: aiohttp.ClientSession, kind: str, path: str) -> None:
        async with http.get(server.url + path) as r:
            headers_len[kind] = sum(len(k) + len(v) + 4 for k, v in r.raw_headers) + 17
            async for raw in r.content.iter_any():
                counts[kind] += len(raw)
                if finished.is_set():
                    return

    async with aiohttp.ClientSession() as http:
        tasks = [asyncio.create_task(reader(http, k, p)) for k, p in kinds.items()]
        await asyncio.sleep(1.0)
        for n, (text, seconds) in enumerate(utts):
            steps = max(1, int(seconds / 0.2))  # a partial every 200 ms of speech
            partials = [
                {"speaker": "김민지", "text": text[: max(1, len(text) * i // steps)],
                 "is_final": False, "message_id": f"u{n}"}
                for i in range(1, steps)
            ]  # fmt: skip
            final = {"speaker": "김민지", "text": text, "end": seconds, "message_id": f"u{n}"}
            await _post(http, server.url, [*partials, final], BW_ROOM)
        await asyncio.sleep(1.0)
        finished.set()
        await _post(http, server.url, [{"speaker": "x", "text": "end"}], BW_ROOM)
        await asyncio.gather(*tasks, return_exceptions=True)
    heartbeat = len(b": keepalive\n\n") * 60 / heartbeat_s
    out: dict[str, Any] = {"speech_minutes": round(minutes, 2), "utterances": len(utts)}
    for kind, total in counts.items():
        body = total - len(b"retry: 2000\n\n") if kind.startswith("sse") else total
        per_min = body / minutes + (heartbeat if kind.startswith("sse") else 0)
        out[kind] = {
            "bytes_per_min": round(per_min),
            "vs_opus_audio": f"{per_min / OPUS_AUDIO_BYTES_PER_MIN:.2%}",
            "response_headers_bytes_once": headers_len.get(kind, 0),
        }
    out["opus_audio_bytes_per_min"] = round(OPUS_AUDIO_BYTES_PER_MIN)
    return out


async def run(quick: bool) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    subscribers, captions = (200, 10) if quick else (2000, 30)
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp))
        try:
            async with aiohttp.ClientSession() as http:
                await server.ready(http)
            result = {
                "fan_out": await fan_out(server, subscribers, captions, interval=0.5),
                "bandwidth": await bandwidth(server),
                "fd_limit": hard,
            }
        finally:
            server.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.quick)), indent=2, ensure_ascii=False))


if __name__ == "__main__":
    os.chdir(PROJECT_ROOT)
    main()
