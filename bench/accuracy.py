"""Accuracy: CER on the shared Korean utterances (WER on English when a model is configured),
each utterance one websocket, 16 kHz in 0.2 s frames like vosk-server's test.py.

``--repeat N`` runs every server N times, interleaved (Plenary, peer, Plenary, …), so a
difference between them can be read against each one's own run-to-run spread (Vosk is not
deterministic). ``cer_table`` puts these and the meeting's CER in one table."""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import aiohttp
from tqdm import tqdm

from bench import audio
from bench.client import stream_sync
from bench.server import Target, Watch
from bench.stats import table
from plenary.scoring import cer, wer
from plenary.settings import Settings

RATE = 16000
FRAME_SECONDS = 0.2


async def run_language(
    target: Target, settings: Settings, language: str, quick: bool
) -> dict[str, Any]:
    utterances = audio.corpus(settings, language)
    if quick:
        utterances = utterances[:: max(1, len(utterances) // 6)][:6]
    clips = audio.clips(utterances, RATE)
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    async with aiohttp.ClientSession() as session, Watch(target.pid) as watch:
        for clip in tqdm(
            clips,
            desc=f"accuracy {language} {target.name}",
            leave=False,
            disable=not sys.stderr.isatty(),
        ):
            result = await stream_sync(
                session,
                target.stream_url(language),
                RATE,
                audio.frames(clip.pcm, RATE, FRAME_SECONDS),
            )
            rows.append(
                {
                    "id": clip.id,
                    "ref": clip.text,
                    "hyp": " ".join(result.texts()),
                    "seconds": round(clip.seconds, 3),
                    "error": result.error,
                }
            )
    wall = time.monotonic() - started
    pairs = [(r["ref"], r["hyp"]) for r in rows]
    score = cer(pairs) if language == "ko" else wer(pairs)
    seconds = sum(r["seconds"] for r in rows)
    return {
        "target": target.name,
        "language": language,
        "metric": "CER" if language == "ko" else "WER",
        "score": score,
        "utterances": len(rows),
        "errors": sum(1 for r in rows if r["error"]),
        "audio_seconds": seconds,
        "wall_seconds": wall,
        "xrt": seconds / wall if wall else None,
        "server_cpu_seconds": watch.cpu_used(),
        "peak_rss_mib": watch.peak_mib(),
        "rows": rows,
    }


async def run(
    targets: list[Target], settings: Settings, quick: bool, repeat: int = 1
) -> dict[str, Any]:
    results = [
        {**await run_language(t, settings, "ko", quick), "run": run_no}
        for run_no in range(repeat)
        for t in targets
    ]
    notes = []
    if "en" in settings.models:
        # A stock vosk-server serves the one model it was started with (Korean here),
        # so English is measured on Plenary only.
        plenary = [t for t in targets if t.lang_query]
        results += [await run_language(t, settings, "en", quick) for t in plenary]
    else:
        notes.append("English WER skipped: no English model configured (settings.models['en']).")
    return {"results": results, "notes": notes}


def report(data: dict[str, Any]) -> str:
    rows = [
        [
            r["target"],
            r.get("run", 0) + 1,
            r["language"],
            r["metric"],
            f"{100 * r['score']:.2f} %",
            r["utterances"],
            r["errors"],
            r["audio_seconds"],
            r["xrt"],
            r["server_cpu_seconds"],
            r["peak_rss_mib"],
        ]
        for r in data["results"]
    ]
    headers = [
        "server",
        "run",
        "lang",
        "metric",
        "score",
        "utts",
        "errors",
        "audio s",
        "xRT",
        "srv CPU s",
        "peak RSS MiB",
    ]
    return "\n".join([table(headers, rows, "== accuracy =="), *data["notes"]])


def spread(scores: list[float]) -> dict[str, Any]:
    return {
        "runs": len(scores),
        "mean": statistics.fmean(scores) if scores else None,
        "min": min(scores, default=None),
        "max": max(scores, default=None),
        "stdev": statistics.stdev(scores) if len(scores) > 1 else None,
    }


def cer_rows(
    accuracy: dict[str, Any] | None, meeting: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Korean CER per workload and server over the repeated runs, with false captions."""
    out: list[dict[str, Any]] = []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in (accuracy or {}).get("results", []):
        if r["language"] == "ko":
            groups.setdefault(("36 utterances, one socket each", r["target"]), []).append(r)
    for r in (meeting or {}).get("results", []):
        groups.setdefault((f"meeting M = {r['participants']}", r["target"]), []).append(r)
    for (workload, target), runs in groups.items():
        scores = [r["score"] if "score" in r else r["cer"] for r in runs]
        false = [r["false_captions"] for r in runs if "false_captions" in r]
        out.append(
            {
                "workload": workload,
                "target": target,
                **spread(scores),
                "false_captions": sum(false) if false else None,
            }
        )
    return out


def cer_table(accuracy: dict[str, Any] | None, meeting: dict[str, Any] | None) -> str:
    rows = [
        [
            r["workload"],
            r["target"],
            r["runs"],
            None if r["mean"] is None else 100 * r["mean"],
            None if r["min"] is None else 100 * r["min"],
            None if r["max"] is None else 100 * r["max"],
            None if r["stdev"] is None else 100 * r["stdev"],
            r["false_captions"],
        ]
        for r in cer_rows(accuracy, meeting)
    ]
    headers = ["workload", "server", "runs", "CER %", "min", "max", "stdev", "false capt."]
    return table(headers, rows, "== Korean CER, same run (false capt.: summed over runs) ==")
