"""Captioner pool: M Jigasi-shaped participants through HAProxy onto 2 captioners, against
one captioner alone, in the same run (issue 16).

Starts two ``plenary captioner serve`` processes and HAProxy on loopback, configured by
the haproxy role's template (bench/harness/pool.py). The meeting is ``bench meeting``'s:
M participants, one websocket each, 48 kHz 0.5 s frames at real time, speakers taking
turns with Korean utterances over white noise (bench/meeting.py scores it). It is played
twice: straight to captioner 1 with captioner 2 idle ("alone"), then through HAProxy,
whose vosk backend (``balance leastconn``) shares the participants between both.

    .venv/bin/python -m bench pool            # M = 100, 12 turns
    .venv/bin/python -m bench pool --quick    # M = 12, 4 turns
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from bench import audio, meeting
from bench.harness.pool import HAProxy, captioner_pool
from bench.server import Target, Watch, settle_all
from bench.stats import table
from plenary.settings import load_settings

KEEP = ("final_p50", "final_p95", "final_max", "final_p95_with_missed", "missed", "turns",
        "cer", "reply_lag_p95", "unanswered_frames", "errors", "first_error", "audio_seconds",
        "wall_seconds", "per_turn")  # fmt: skip


def vosk_sessions(proxy: HAProxy) -> dict[str, int]:
    """Websockets each captioner was given by the vosk backend so far (HAProxy's stot)."""
    url = f"http://127.0.0.1:{proxy.stats_port}/;csv"
    with urllib.request.urlopen(url, timeout=5) as r:
        rows = csv.DictReader(io.StringIO(r.read().decode().lstrip("# ")))
        return {
            row["svname"]: int(row["stot"] or 0)
            for row in rows
            if row["pxname"] == "captioner_vosk" and row["svname"] != "BACKEND"
        }


async def play(
    name: str, url: str, pids: dict[str, int | None], script: meeting.Script, m: int
) -> dict[str, Any]:
    """One meeting against ``url``; memory and CPU of every captioner over it."""
    targets = [Target(n, "", pid) for n, pid in pids.items()]
    await settle_all(targets)
    print(f"pool: {name}, M={m} ({script.frames * meeting.FRAME_SECONDS:.0f} s) …", flush=True)
    watches = {n: Watch(pid) for n, pid in pids.items()}
    for w in watches.values():
        await w.__aenter__()
    try:
        # pid None: run_one's own watch is not used, the per-captioner watches are.
        result = await meeting.run_one(
            Target(name, url, None, lang_query=True), script, m, drain=30.0
        )
    finally:
        for w in watches.values():
            await w.__aexit__(None, None, None)
    return {
        "setup": name,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "participants": m,
        **{k: result[k] for k in KEEP},
        "captioners": {
            n: {"rss_mib": w.rss_mib(), "peak_rss_mib": w.peak_mib(), "cpu_seconds": w.cpu_used()}
            for n, w in watches.items()
        },
    }


async def run(quick: bool) -> dict[str, Any]:
    settings = load_settings()
    m, turns = (12, 4) if quick else (100, 12)
    clips = audio.clips(audio.corpus(settings, "ko")[:turns], meeting.RATE)
    script = meeting.build_script(clips, m, gap=0.3, lead=1.0, tail=4.0, noise_dbfs=-55.0)
    results = []
    folder = Path(tempfile.mkdtemp(prefix="plenary-pool-"))  # kept: the servers' logs
    print(f"pool: logs in {folder}", flush=True)
    # Jigasi's participants are streams like any other: the default max_streams (200)
    # lets one captioner alone take all of them, so the comparison is fair.
    quiet = {"PLENARY_LOG_LEVEL": "WARNING"}
    with captioner_pool(folder, [quiet, quiet], check_inter="1s") as (proxy, captioners):
        pids = {c.name: c.pid for c in captioners}
        first = captioners[0]
        # A fresh captioner spends seconds of CPU on its first utterances (recognizers
        # built, the graph cache filled): both get the same short meeting first, so
        # neither setup pays for it.
        warm = meeting.build_script(clips[:4], 4, gap=0.3, lead=1.0, tail=2.0, noise_dbfs=-55.0)
        print("pool: warming both captioners up …", flush=True)
        await asyncio.gather(
            *(meeting.run_one(Target(c.name, f"ws://{c.address}/", None, lang_query=True),
                              warm, 4, drain=10.0) for c in captioners)
        )  # fmt: skip
        results.append(await play("1 captioner alone", f"ws://{first.address}/", pids, script, m))
        before = vosk_sessions(proxy)
        results.append(await play("2 captioners, HAProxy", f"{proxy.ws_url}/", pids, script, m))
        after = vosk_sessions(proxy)
        results[-1]["streams_per_captioner"] = {n: after[n] - before.get(n, 0) for n in after}
    return {"participants": m, "turns": turns, "results": results}


def report(data: dict[str, Any]) -> str:
    headers = ["setup", "M", "final p50 s", "final p95 s", "p95 w/ missed", "missed", "CER %",
               "reply lag p95 s", "unanswered", "streams per captioner",
               "RSS end MiB (1 / 2)", "peak RSS MiB (1 / 2)", "CPU s (1 / 2)"]  # fmt: skip
    rows = []
    for r in data["results"]:
        caps = list(r["captioners"].values())
        shares = r.get("streams_per_captioner")
        rows.append([
            r["setup"], r["participants"], r["final_p50"], r["final_p95"],
            r["final_p95_with_missed"], f"{r['missed']}/{r['turns']}", 100 * r["cer"],
            r["reply_lag_p95"], r["unanswered_frames"],
            " / ".join(str(v) for v in shares.values()) if shares else f"{r['participants']} / 0",
            " / ".join(f"{c['rss_mib']:.0f}" for c in caps),
            " / ".join(f"{c['peak_rss_mib']:.0f}" for c in caps),
            " / ".join(f"{c['cpu_seconds']:.1f}" for c in caps),
        ])  # fmt: skip
    return table(headers, rows, f"== captioner pool (M = {data['participants']}, "
                 f"{data['turns']} turns; goal: final p95 ≤ 1.0 s) ==")  # fmt: skip


if __name__ == "__main__":
    import json
    import sys

    out = asyncio.run(run("--quick" in sys.argv))
    print(report(out))
    print(json.dumps(out, indent=1, default=str))
