"""Meeting: M participants shaped like Jigasi (48 kHz, 0.5 s frames, one websocket each,
sent at real time without waiting for replies). Speakers take turns with consecutive Korean
utterances; everyone else, and every speaker between turns, sends white noise. The last
participant never speaks: it sends louder white noise only (``noise_only_dbfs``, above
Plenary's energy gate, so its VAD has to reject it), and any text it gets back is a
*false caption*.

Final latency of an utterance: from the (scheduled) send time of the frame holding its last
speech sample to the arrival of the first non-empty ``text`` final on that socket answering
that frame or a later one. The final answering the eof does not count: an utterance with no
final before it is *missed*.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np

from bench import audio
from bench.client import StreamResult, connect, stream_paced
from bench.server import Target, Watch, settle_all
from bench.stats import percentile, table
from plenary.scoring import cer
from plenary.settings import Settings

RATE = 48000
FRAME_SECONDS = 0.5
FRAME = int(RATE * FRAME_SECONDS)  # samples; 48,000 bytes


@dataclass(frozen=True, slots=True)
class Turn:
    clip: audio.Clip
    participant: int
    start: int  # sample on the meeting clock
    last_speech: int  # sample just after the last speech window

    @property
    def first_frame(self) -> int:
        return self.start // FRAME

    @property
    def last_frame(self) -> int:
        return max(0, self.last_speech - 1) // FRAME


@dataclass(slots=True)
class Script:
    """The whole meeting's audio, shared by every server: who says what, when."""

    turns: list[Turn]
    speech: np.ndarray  # int16, every turn placed on the meeting clock
    owner: np.ndarray  # int16, participant speaking at each sample, -1 nobody
    noise: np.ndarray  # int16 noise loop (plus one frame, so a slice never wraps)
    frames: int
    noise_only: int  # the participant who never speaks
    loud_noise: np.ndarray  # its noise loop, like ``noise``

    def participant_frames(self, p: int) -> Iterator[bytes]:
        source = self.loud_noise if p == self.noise_only else self.noise
        loop = len(source) - FRAME
        offset = (p * 7919 * FRAME // 10) % loop  # each participant its own noise
        for k in range(self.frames):
            a = k * FRAME
            n = (offset + a) % loop
            noise = source[n : n + FRAME]
            mask = self.owner[a : a + FRAME] == p
            if mask.any():
                mixed = noise.astype(np.int32) + np.where(mask, self.speech[a : a + FRAME], 0)
                yield np.clip(mixed, -32768, 32767).astype("<i2").tobytes()
            else:
                yield noise.astype("<i2").tobytes()


def build_script(
    clips: list[audio.Clip],
    participants: int,
    *,
    gap: float,
    lead: float,
    tail: float,
    noise_dbfs: float,
    noise_only_dbfs: float = -40.0,
) -> Script:
    turns = []
    pos = int(lead * RATE)
    speakers = max(1, participants - 1)  # the last participant only sends noise
    for i, clip in enumerate(clips):
        turns.append(Turn(clip, i % speakers, pos, pos + clip.last_speech))
        pos += len(clip.pcm) + int(gap * RATE)
    total = pos + int(tail * RATE)
    frames = -(-total // FRAME)
    speech = np.zeros(frames * FRAME, dtype=np.int16)
    owner = np.full(frames * FRAME, -1, dtype=np.int16)
    for t in turns:
        speech[t.start : t.start + len(t.clip.pcm)] = t.clip.pcm
        owner[t.start : t.start + len(t.clip.pcm)] = t.participant
    noise = audio.white_noise(20.0, RATE, noise_dbfs)
    noise = np.concatenate([noise, noise[:FRAME]])
    loud = audio.white_noise(20.0, RATE, noise_only_dbfs)
    loud = np.concatenate([loud, loud[:FRAME]])
    noise_only = participants - 1 if participants > 1 else -1
    return Script(turns, speech, owner, noise, frames, noise_only, loud)


def score(script: Script, t0: float, results: list[StreamResult], end: float) -> dict[str, Any]:
    """Attribute finals to turns; latencies, misses, CER, spurious finals."""
    claimed: set[tuple[int, int]] = set()
    latencies: list[float] = []
    censored: list[float] = []
    per_turn: list[dict[str, Any]] = []
    pairs = []
    by_participant: dict[int, list[Turn]] = {}
    for t in script.turns:
        by_participant.setdefault(t.participant, []).append(t)
    for p, turns in by_participant.items():
        replies = results[p].replies
        frames = script.frames
        for i, turn in enumerate(turns):
            due = t0 + turn.last_frame * FRAME_SECONDS
            stop = turns[i + 1].first_frame if i + 1 < len(turns) else len(replies)
            hit = next(
                (
                    j
                    for j in range(turn.last_frame, min(frames, len(replies)))
                    if replies[j][1].get("text") and (p, j) not in claimed
                ),
                None,
            )
            if hit is None:
                censored.append(end - t0)  # a missed final counts as the whole run length
                per_turn.append({"id": turn.clip.id, "participant": p, "latency": None})
            else:
                claimed.add((p, hit))
                latencies.append(replies[hit][0] - due)
                censored.append(replies[hit][0] - due)
                per_turn.append(
                    {
                        "id": turn.clip.id,
                        "participant": p,
                        "latency": round(replies[hit][0] - due, 3),
                        "frames_after_last_speech": hit - turn.last_frame,
                    }
                )
                stop = hit + 1
            words = [
                replies[j][1]["text"]
                for j in range(turn.first_frame, min(stop, len(replies)))
                if replies[j][1].get("text")
            ]
            for j in range(turn.first_frame, min(stop, len(replies))):
                if replies[j][1].get("text"):
                    claimed.add((p, j))
            pairs.append((turn.clip.text, " ".join(words)))
    spurious = sum(
        1
        for p, r in enumerate(results)
        for j, (_, msg) in enumerate(r.replies[: script.frames])
        if msg.get("text") and (p, j) not in claimed
    )
    missed = len(script.turns) - len(latencies)
    # Every reply to the noise-only participant, the eof's included, and partials apart.
    noise_replies = (
        [m for _, m in results[script.noise_only].replies] if script.noise_only >= 0 else []
    )
    false_texts = [m["text"] for m in noise_replies if m.get("text")]
    return {
        "turns": len(script.turns),
        "finals": len(latencies),
        "missed": missed,
        "final_p50": percentile(latencies, 50),
        "final_p95": percentile(latencies, 95),
        "final_max": max(latencies) if latencies else None,
        # Missed turns counted as taking the whole run length (first frame to last reply).
        "final_p95_with_missed": percentile(censored, 95),
        "cer": cer(pairs),
        "spurious_finals": spurious,
        "false_captions": len(false_texts),
        "false_caption_chars": sum(len(t.replace(" ", "")) for t in false_texts),
        "false_caption_texts": false_texts[:20],
        "false_partials": sum(1 for m in noise_replies if m.get("partial")),
        "per_turn": per_turn,
    }


async def run_one(
    target: Target, script: Script, participants: int, drain: float
) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session, Watch(target.pid) as watch:
        sockets = []
        for _ in range(participants):  # one by one, as people join
            sockets.append(await asyncio.wait_for(connect(session, target.stream_url()), 30))
        t0 = time.monotonic() + 0.5
        audio_end = t0 + script.frames * FRAME_SECONDS
        rss_at_end: dict[str, float | None] = {}

        async def snapshot() -> None:
            await asyncio.sleep(max(0.0, audio_end - time.monotonic()))
            rss_at_end["rss"] = watch.rss_mib()

        snap = asyncio.create_task(snapshot())
        results = await asyncio.gather(
            *(
                stream_paced(
                    session,
                    target.stream_url(),
                    RATE,
                    script.participant_frames(p),
                    frame_seconds=FRAME_SECONDS,
                    start_at=t0,
                    drain=drain,
                    ws=ws,
                )
                for p, ws in enumerate(sockets)
            )
        )
        end = time.monotonic()
        await snap
    lags = [lag for r in results for lag in r.reply_lags()]
    send_lag = max(
        (s - d for r in results for s, d in zip(r.sent, r.scheduled, strict=False)), default=0.0
    )
    out = {
        "target": target.name,
        "participants": participants,
        "audio_seconds": script.frames * FRAME_SECONDS,
        "wall_seconds": end - t0,
        **score(script, t0, results, end),
        "reply_lag_p95": percentile(lags, 95),
        "max_send_lag": send_lag,
        "unanswered_frames": sum(r.missing_replies() for r in results),
        "errors": sum(1 for r in results if r.error),
        "first_error": next((r.error for r in results if r.error), None),
        "server_cpu_seconds": watch.cpu_used(),
        "end_rss_mib": rss_at_end.get("rss"),
        "peak_rss_mib": watch.peak_mib(),
    }
    return out


async def run(
    targets: list[Target],
    settings: Settings,
    participants: list[int],
    utterances: int,
    *,
    gap: float = 0.3,
    lead: float = 1.0,
    tail: float = 4.0,
    noise_dbfs: float = -55.0,
    noise_only_dbfs: float = -40.0,
    drain: float = 30.0,
    repeat: int = 1,
) -> dict[str, Any]:
    clips = audio.clips(audio.corpus(settings, "ko")[:utterances], RATE)
    results = []
    for m in participants:
        script = build_script(
            clips,
            m,
            gap=gap,
            lead=lead,
            tail=tail,
            noise_dbfs=noise_dbfs,
            noise_only_dbfs=noise_only_dbfs,
        )
        for run_no in range(repeat):  # interleaved, so both servers see the same machine
            for target in targets:
                print(
                    f"meeting: {target.name} M={m} run {run_no + 1}/{repeat} "
                    f"({script.frames * FRAME_SECONDS:.0f} s) …",
                    flush=True,
                )
                waited = await settle_all(targets)
                one = await run_one(target, script, m, drain)
                results.append({**one, "run": run_no, "settle_seconds": waited})
    return {
        "results": results,
        "utterances": utterances,
        "gap": gap,
        "tail": tail,
        "noise_dbfs": noise_dbfs,
        "noise_only_dbfs": noise_only_dbfs,
        "drain": drain,
        "repeat": repeat,
    }


def report(data: dict[str, Any]) -> str:
    headers = [
        "M",
        "server",
        "run",
        "final p50 s",
        "final p95 s",
        "p95 w/ missed",
        "missed",
        "CER %",
        "false capt.",
        "spurious",
        "reply lag p95",
        "unanswered",
        "srv CPU s",
        "RSS end MiB",
        "peak RSS MiB",
    ]
    rows = [
        [
            r["participants"],
            r["target"],
            r.get("run", 0) + 1,
            r["final_p50"],
            r["final_p95"],
            r["final_p95_with_missed"],
            f"{r['missed']}/{r['turns']}",
            100 * r["cer"],
            r.get("false_captions"),
            r["spurious_finals"],
            r["reply_lag_p95"],
            r["unanswered_frames"],
            r["server_cpu_seconds"],
            r["end_rss_mib"],
            r["peak_rss_mib"],
        ]
        for r in data["results"]
    ]
    return table(
        headers,
        rows,
        f"== meeting ({data['utterances']} turns, noise {data['noise_dbfs']:.0f} dBFS, "
        f"one noise-only participant at {data.get('noise_only_dbfs', -40):.0f} dBFS: "
        f"'false capt.' = texts it got; 'p95 w/ missed' counts a missed final as the whole "
        f"run length) ==",
    )
