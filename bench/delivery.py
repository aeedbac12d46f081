"""Benchmark: captioner → orchestrator delivery in the split topology (issue 12).

Four processes on loopback, as the Ansible roles lay them out: ``plenary serve
--no-captioner`` (temporary database), ``plenary captioner serve`` delivering to it
over HTTP with a producer token, ``plenary irc --orchestrator URL`` and a real ngircd.
A fake videobridge plays one meeting of M = 24 participants into ``/transcribe``
(MediaJson Opus of real Korean speech, one speaking at a time, ``room=bench``).
Measured from each utterance's last speech packet to its last final caption on the
orchestrator's SSE stream, and to the line an independent IRC client sees.

A second meeting kills the orchestrator with SIGKILL mid-run and restarts it on the
same database; the captioner sends every final back to the bridge too (``sendBack``),
so what it produced is compared with what the orchestrator stored: lost, duplicated.

    .venv/bin/python -m bench delivery [--quick]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.bridge import last_speech_frame, silent_payload
from bench.harness.audio import read_pcm
from bench.harness.opus_frames import FRAME, FakeBridge
from bench.server import free_port, wait_healthy
from bench.stats import percentile
from plenary.corpus import load_corpus
from plenary.settings import load_settings

ROOM = "bench"
CHANNEL = "#bench"
TOKEN = "bench-producer-token"
PARTICIPANTS = 24
OUTAGE = 6.0  # seconds the orchestrator stays dead in the second meeting
PAUSE = 1.5  # seconds between one speaker's last packet and the next speaker's first
PLENARY = Path(sys.executable).with_name("plenary")


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            args, env={**os.environ, **env}, cwd=log.parent, stdout=out, stderr=out
        )


@dataclass
class Topology:
    """ngircd, orchestrator, IRC relay and captioner as separate processes."""

    folder: Path
    irc_port: int = field(default_factory=free_port)
    port: int = field(default_factory=free_port)
    captioner_port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_ngircd(self) -> None:
        exe = shutil.which("ngircd") or "/usr/sbin/ngircd"
        conf = self.folder / "ngircd.conf"
        (self.folder / "motd.txt").write_text("bench\n")
        conf.write_text(
            f"[Global]\n Name = irc.bench.test\n Info = bench\n Listen = 127.0.0.1\n"
            f" Ports = {self.irc_port}\n MotdFile = {self.folder}/motd.txt\n"
            f" PidFile = {self.folder}/ngircd.pid\n[Limits]\n MaxConnectionsIP = 0\n"
            "[Options]\n DNS = no\n Ident = no\n PAM = no\n"
        )
        self.procs["ngircd"] = _spawn(
            [exe, "--nodaemon", "--config", str(conf)], {}, self.folder / "ngircd.log"
        )

    def start_orchestrator(self) -> None:
        env = {
            "PLENARY_ORCHESTRATOR__DATABASE": str(self.folder / "plenary.sqlite3"),
            "PLENARY_ORCHESTRATOR__PORT": str(self.port),
            "PLENARY_CAPTIONS__PRODUCERS": json.dumps({"captioner-1": TOKEN}),
            "PLENARY_LOG_LEVEL": "WARNING",
        }
        if not (self.folder / "plenary.sqlite3").exists():  # the public room, made once
            subprocess.run(
                [str(PLENARY), "rooms", "create", ROOM, "--title", ROOM, "--anyone",
                 "--start", "2030-01-01T10:00", "--end", "2030-01-01T11:00",
                 "--retention-days", "1"],  # recorded, as before
                env={**os.environ, **env}, check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
        self.procs["orchestrator"] = _spawn(
            [str(PLENARY), "serve", "--no-captioner"], env, self.folder / "orchestrator.log"
        )

    def start_relay(self) -> None:
        network = {"host": "127.0.0.1", "port": self.irc_port, "tls": False, "nick": "relay"}
        env = {
            "PLENARY_IRC__NETWORKS": json.dumps({"default": network}),
            "PLENARY_IRC__ROOMS": json.dumps([{"room": ROOM, "channel": CHANNEL}]),
            "PLENARY_LOG_LEVEL": "WARNING",
        }
        self.procs["relay"] = _spawn(
            [str(PLENARY), "irc", "--orchestrator", self.url], env, self.folder / "relay.log"
        )

    def start_captioner(self) -> None:
        env = {
            "PLENARY_CAPTIONER__ORCHESTRATOR_URL": self.url,
            "PLENARY_CAPTIONER__ORCHESTRATOR_TOKEN": TOKEN,
            "PLENARY_LOG_LEVEL": "WARNING",
        }
        args = ["captioner", "serve", "--host", "127.0.0.1", "--port", str(self.captioner_port)]
        self.procs["captioner"] = _spawn([str(PLENARY), *args], env, self.folder / "captioner.log")

    def kill_orchestrator(self) -> None:
        proc = self.procs.pop("orchestrator")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop(self) -> None:
        for proc in reversed(self.procs.values()):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


class IrcWatcher:
    """An independent IRC client in the channel: (arrival time, text) of every PRIVMSG."""

    def __init__(self) -> None:
        self.lines: list[tuple[float, str]] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self, port: int) -> None:
        for _ in range(100):
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.1)
        else:
            raise RuntimeError("ngircd did not start")
        writer.write(b"NICK watcher\r\nUSER watcher 0 * :bench\r\n")
        joined = asyncio.Event()

        async def read() -> None:
            while line := await reader.readline():
                text = line.decode("utf-8", "replace").rstrip("\r\n")
                parts = text.split(" ", 3)
                if text.startswith("PING"):
                    writer.write(b"PONG" + line[4:])
                elif len(parts) > 1 and parts[1] == "001":
                    writer.write(f"JOIN {CHANNEL}\r\n".encode())
                elif len(parts) > 1 and parts[1] == "366":
                    joined.set()
                elif len(parts) == 4 and parts[1] == "PRIVMSG":
                    self.lines.append((time.monotonic(), parts[3].removeprefix(":")))

        self._task = asyncio.create_task(read())
        await asyncio.wait_for(joined.wait(), 15)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class SseWatcher:
    """The room's SSE stream: (arrival time, caption) of every final; resumes after breaks."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.captions: list[tuple[float, dict[str, Any]]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        last = 0
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=2)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                headers = {"Last-Event-ID": str(last)}
                try:
                    async with http.get(
                        f"{self.url}/r/{ROOM}/captions/stream?after={last}", headers=headers
                    ) as r:
                        async for raw in r.content:
                            line = raw.decode()
                            if line.startswith("data: "):
                                caption = json.loads(line[6:])
                                self.captions.append((time.monotonic(), caption))
                                last = max(last, int(caption["seq"]))
                except (aiohttp.ClientError, OSError):
                    pass
                await asyncio.sleep(0.2)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@dataclass
class Played:
    """What the fake bridge sent and got back."""

    last_packet: list[float]  # per utterance: when its last speech packet went out
    sent_back: list[dict[str, Any]]  # the captioner's finals, as sendBack results
    back_at: list[float]  # when each of them arrived
    duration: float


async def play(address: str, clips: list[bytes], session: str, midway: Any = None) -> Played:
    """One meeting: PARTICIPANTS sources, utterance k spoken by participant k (one at a
    time); the other participants are muted (DTX) or send ``vad: false`` packets."""
    fake = FakeBridge()
    tags = [f"{n + 1:08x}-a0" for n in range(PARTICIPANTS)]
    frames: list[tuple[float, str]] = [(0.0, fake.start(tag)) for tag in tags]
    marks: list[int] = []
    at = 0.5
    for k, pcm in enumerate(clips):
        packets = fake.speech(tags[k], pcm, silence="dtx")
        last = last_speech_frame(pcm) * FRAME / 48000
        marks.append(len(frames) + max(i for i, (t, _) in enumerate(packets) if t <= last + 1e-9))
        frames += [(at + t, f) for t, f in packets]
        at += len(pcm) / 2 / 48000 + PAUSE
    order = sorted(range(len(frames)), key=lambda i: frames[i][0])
    payload = silent_payload()
    unmuted = [t for n, t in enumerate(tags) if n % 2 == 1 and n >= len(clips)]
    ticks = int(at / 0.02)
    sent_at: dict[int, float] = {}
    sent_back: list[dict[str, Any]] = []
    back_at: list[float] = []
    url = f"ws://{address}/transcribe?sessionId={session}&room={ROOM}&sendBack=true&lang=ko"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:

        async def read() -> None:
            async for msg in ws:
                data = json.loads(msg.data)
                if data.get("type") == "transcription-result" and not data["is_interim"]:
                    sent_back.append(data)
                    back_at.append(time.monotonic())

        reader = asyncio.create_task(read())
        begin = time.monotonic()
        pos = 0
        for tick in range(ticks + 150):
            delay = begin + tick * 0.02 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            while pos < len(order) and frames[order[pos]][0] <= tick * 0.02:
                await ws.send_str(frames[order[pos]][1])
                sent_at[order[pos]] = time.monotonic()
                pos += 1
            if tick < ticks:
                for tag in unmuted:
                    await ws.send_str(fake.media(tag, payload, silent=True))
            if midway is not None and tick == ticks * 2 // 5:
                midway()
        await asyncio.sleep(2.0)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    return Played([sent_at[i] for i in marks], sent_back, back_at, at)


def latencies(
    played: Played, sse: SseWatcher, irc: IrcWatcher
) -> tuple[list[float], list[float], list[float], int]:
    """Per utterance: its last final sent back to the bridge, on SSE, and its line in IRC,
    minus the last speech packet."""
    to_back, to_sse, to_irc, missing = [], [], [], 0
    for k, sent in enumerate(played.last_packet):
        tag = f"{k + 1:08x}-a0"
        back = [t for t, r in zip(played.back_at, played.sent_back, strict=True)
                if r["participant"].get("tag") == tag]  # fmt: skip
        if back:
            to_back.append(max(back) - sent)
        speaker = f"Speaker {k + 1}"  # labels follow the order of the start frames
        mine = [(t, c) for t, c in sse.captions if c["speaker"] == speaker]
        if not mine:
            missing += 1
            continue
        to_sse.append(max(t for t, _ in mine) - sent)
        seen = [next((t for t, line in irc.lines if c["text"][:40] in line), None) for _, c in mine]
        if None not in seen:
            to_irc.append(max(t for t in seen if t is not None) - sent)
    return to_back, to_sse, to_irc, missing


async def stored(url: str) -> list[dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}/api/v1/rooms/{ROOM}/captions?after=0&limit=1000") as r,
    ):
        events: list[dict[str, Any]] = (await r.json())["events"]
        return events


async def run(quick: bool) -> dict[str, Any]:
    settings = load_settings()
    corpus = load_corpus(settings.speech_dir, "ko")
    count = 6 if quick else 12
    clips = [read_pcm(u.path, 48000)[0] for u in corpus[1 : 1 + 3 * count : 3]]
    with tempfile.TemporaryDirectory(prefix="plenary-bench-delivery-") as tmp:
        top = Topology(Path(tmp))
        irc, sse = IrcWatcher(), SseWatcher(top.url)
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
            sse.start()
            await asyncio.sleep(0.5)
            played = await play(address, clips, f"bench-{time.time_ns()}")
            await asyncio.sleep(2.0)
            to_back, to_sse, to_irc, missing = latencies(played, sse, irc)
            first = {
                "utterances": len(clips),
                "finals": len(played.sent_back),
                "missing_on_sse": missing,
                "sendback_p50_s": percentile(to_back, 50),
                "sendback_p95_s": percentile(to_back, 95),
                "sse_p50_s": percentile(to_sse, 50),
                "sse_p95_s": percentile(to_sse, 95),
                "sse_max_s": max(to_sse) if to_sse else None,
                "irc_lines": len(irc.lines),
                "irc_measured": len(to_irc),
                "irc_p50_s": percentile(to_irc, 50),
                "irc_p95_s": percentile(to_irc, 95),
                "irc_max_s": max(to_irc) if to_irc else None,
            }
            print(json.dumps(first), flush=True)
            before = {(c["message_id"], c["text"]) for c in await stored(top.url)}

            killed: dict[str, float] = {}

            def kill() -> None:
                top.kill_orchestrator()
                killed["at"] = time.monotonic()
                asyncio.get_running_loop().call_later(OUTAGE, top.start_orchestrator)

            played2 = await play(address, clips, f"bench-kill-{time.time_ns()}", kill)
            await wait_healthy(f"{top.url}/healthz", top.procs["orchestrator"], 60)
            await asyncio.sleep(5.0)  # the captioner's retry backoff is at most 2 s
            after = await stored(top.url)
            pairs = Counter((c["message_id"], c["text"]) for c in after)
            produced = [(r["message_id"], r["transcript"][0]["text"]) for r in played2.sent_back]
            new = {p: n for p, n in pairs.items() if p not in before}
            log = (top.folder / "captioner.log").read_text(errors="replace")
            second = {
                "outage_logged": "unreachable" in log and "reachable again" in log,
                "outage_s": OUTAGE,
                "finals_during_outage": sum(
                    1 for t in played2.back_at if killed["at"] <= t <= killed["at"] + OUTAGE
                ),
                "finals_produced": len(produced),
                "stored": sum(new.values()),
                "lost": sum(1 for p in produced if p not in new),
                "duplicated": sum(n - 1 for n in new.values()),
                "unexpected": sum(1 for p in new if p not in set(produced)),
            }
            print(json.dumps(second), flush=True)
        finally:
            await sse.stop()
            await irc.stop()
            top.stop()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "quick": quick,
        "participants": PARTICIPANTS,
        "bridge_quiet_ms": settings.captioner.bridge_quiet_ms,
        "run": first,
        "kill9": second,
    }


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next(
            (ln.split(":", 1)[1].strip() for ln in out.splitlines() if "Model name" in ln), ""
        )
    return f"nproc {os.cpu_count()}, {model}"


def report(data: dict[str, Any]) -> str:
    def f(value: Any) -> str:
        return "-" if value is None else f"{value:.2f}"

    r, k = data["run"], data["kill9"]
    return "\n".join(
        [
            f"delivery benchmark ({data['date']}, {data['machine']}), split topology, "
            f"M = {data['participants']}, {r['utterances']} utterances",
            f"  speech end → result sent back to the bridge (the captioner alone): "
            f"p50 {f(r['sendback_p50_s'])} s, p95 {f(r['sendback_p95_s'])} s",
            f"  speech end → SSE: p50 {f(r['sse_p50_s'])} s, p95 {f(r['sse_p95_s'])} s, "
            f"max {f(r['sse_max_s'])} s (missing {r['missing_on_sse']})",
            f"  speech end → IRC: p50 {f(r['irc_p50_s'])} s, p95 {f(r['irc_p95_s'])} s, "
            f"max {f(r['irc_max_s'])} s ({r['irc_measured']} of {r['utterances']} matched)",
            f"  orchestrator kill -9 mid-run, down {k['outage_s']:.0f} s "
            f"({k['finals_during_outage']} finals produced meanwhile): "
            f"{k['finals_produced']} finals produced, "
            f"{k['stored']} stored, lost {k['lost']}, duplicated {k['duplicated']}",
        ]
    )


if __name__ == "__main__":
    print(report(asyncio.run(run("--quick" in sys.argv))))
