"""``python -m bench lease``: failover time of the IRC relay's channel lease.

A real ngircd, a throwaway PostgreSQL, one orchestrator (``plenary serve
--no-captioner`` on it, ``orchestrator.lease_seconds`` short) and two standalone
``plenary irc --orchestrator URL`` processes relaying one room to one channel; an
independent IRC client in the channel. Captions are posted over HTTP at a steady pace;
the relay holding the channel's lease is killed with SIGKILL; the failover time is from
the kill to the first caption the other relay posts (seen by the independent client).
Each repetition also counts what the client saw: lost and repeated captions.

``LeaseSetup`` is shared with tests/test_relay_lease.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import procs
from bench.harness.ircservers import HOST, RawClient, speaker_pieces, start_server
from bench.harness.netutil import free_port
from bench.harness.postgres import postgres_server
from bots.irc import protocol

ROOM, CHANNEL = "talk", "#talk"
ADMIN, PRODUCER, READER = "lease-admin", "lease-producer", "lease-relay"
SPEAKER = "Kim"


def plenary() -> str:
    return str(Path(sys.executable).with_name("plenary"))


def _toml(value: Any) -> str:
    return json.dumps(value)  # strings, numbers and booleans are written alike in TOML


@dataclass
class Process:
    """One ``plenary`` command on loopback, its output in ``folder/name.log``."""

    name: str
    folder: Path
    config: str
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        path = self.folder / f"{self.name}.toml"
        path.write_text(self.config)
        with (self.folder / f"{self.name}.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [plenary(), "--config", str(path), *self.args],
                cwd=self.folder, stdout=log, stderr=subprocess.STDOUT,
                env={k: v for k, v in os.environ.items() if not k.startswith("PLENARY_")},
            )  # fmt: skip

    def kill(self) -> float:
        """SIGKILL; the time it was sent (monotonic)."""
        assert self.proc is not None
        at = time.monotonic()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        return at

    def stop(self) -> None:
        procs.stop(self.proc)

    def log_tail(self) -> str:
        path = self.folder / f"{self.name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


@dataclass
class Seen:
    at: float  # monotonic, when the observer had it (polled every 10 ms)
    nick: str
    word: str


@dataclass
class LeaseSetup:
    """The orchestrator and the IRC observer of the scenario (module doc); ``room(n)``
    makes room ``talkN`` with channel ``#talkN``, ``relay(nick, room)`` a relay process
    for it (start it yourself), ``post`` a caption, ``words`` what IRC showed."""

    folder: Path
    database_url: str
    irc_port: int
    lease_seconds: float = 3.0
    port: int = field(default_factory=free_port)
    orchestrator: Process | None = None
    relays: list[Process] = field(default_factory=list)
    observer: RawClient | None = None
    posted: dict[str, list[str]] = field(default_factory=dict)
    seen: dict[str, list[Seen]] = field(default_factory=dict)
    http: aiohttp.ClientSession | None = None
    _watch: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def orchestrator_config(self) -> str:
        return f"""log_level = "INFO"
[orchestrator]
host = "{HOST}"
port = {self.port}
public_url = "{self.url}"
database_url = {_toml(self.database_url)}
admin_token = "{ADMIN}"
lease_seconds = {self.lease_seconds}
[captions]
producer_token = "{PRODUCER}"
heartbeat_seconds = 1.0
service_readers = {{ relay = "{READER}" }}
"""

    def relay(self, nick: str, room: str) -> Process:
        """A standalone ``plenary irc --orchestrator URL`` relaying ``room``."""
        config = f"""log_level = "INFO"
[irc]
orchestrator_token = "{READER}"
[irc.networks.default]
host = "{HOST}"
port = {self.irc_port}
tls = false
nick = "{nick}"
reconnect_min = 0.5
reconnect_max = 4.0
registration_timeout = 5.0
[[irc.rooms]]
room = "{room}"
channel = "#{room}"
"""
        process = Process(nick, self.folder, config, ["irc", "--orchestrator", self.url])
        self.relays.append(process)
        return process

    def node(self, nick: str, room: str) -> tuple[Process, str]:
        """Another orchestrator node on the same database (``plenary serve
        --no-captioner``) whose embedded relay serves ``room`` as ``nick``; its URL."""
        port = free_port()
        relay = self.relay(nick, room)
        self.relays.remove(relay)
        config = self.orchestrator_config().replace(f"port = {self.port}", f"port = {port}")
        config = config.replace(
            f'public_url = "{self.url}"', f'public_url = "http://{HOST}:{port}"'
        )
        irc = relay.config.split("\n", 1)[1].replace(f'orchestrator_token = "{READER}"\n', "")
        process = Process(nick, self.folder, config + irc, ["serve", "--no-captioner"])
        self.relays.append(process)
        return process, f"http://{HOST}:{port}"

    async def until_up(self, url: str, process: Process) -> None:
        assert self.http is not None
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with self.http.get(f"{url}/healthz") as r:
                    if r.status == 200:
                        return
            proc = process.proc
            if time.monotonic() > deadline or (proc is not None and proc.poll() is not None):
                raise RuntimeError(f"{process.name} did not start: {process.log_tail()}")
            await asyncio.sleep(0.1)

    async def start(self) -> None:
        self.http = aiohttp.ClientSession()
        self.orchestrator = Process("orchestrator", self.folder, self.orchestrator_config(),
                                    ["serve", "--no-captioner"])  # fmt: skip
        self.orchestrator.start()
        await self.until_up(self.url, self.orchestrator)
        self.observer = await RawClient.connect(self.irc_port, "watcher")
        self._watch = asyncio.create_task(self._watching())

    async def room(self, n: int) -> str:
        """Room ``talkN`` (public), its channel ``#talkN`` watched by the observer."""
        assert self.http is not None and self.observer is not None
        slug = f"talk{n}"
        # Kept transcripts: stored rows, which every node's stream reads (LISTEN/NOTIFY).
        room = {"slug": slug, "title": slug, "caption_readers": [{"kind": "anyone"}],
                "transcript_retention_days": 1,
                "policy": {"access": [{"kind": "anyone"}], "moderators": []},
                "schedule": {"start": "2030-01-01T10:00", "end": "2030-01-01T11:00",
                             "timezone": "UTC"}}  # fmt: skip
        headers = {"Authorization": f"Bearer {ADMIN}"}
        async with self.http.post(f"{self.url}/api/v1/rooms", json=room, headers=headers) as r:
            assert r.status == 201, await r.text()
        await self.observer.join(f"#{slug}")
        self.posted[slug], self.seen[slug] = [], []
        return slug

    async def _watching(self) -> None:
        assert self.observer is not None
        done = 0
        while True:
            messages = self.observer.privmsgs
            now = time.monotonic()
            for message in messages[done:]:
                slug = message.param(0).lstrip("#").lower()
                for _, text in speaker_pieces(message.param(-1)):
                    self.seen.setdefault(slug, []).extend(
                        Seen(now, message.nick, word) for word in text.split()
                    )
            done = len(messages)
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        for relay in self.relays:
            relay.stop()
        if self.orchestrator is not None:
            self.orchestrator.stop()
        if self.observer is not None:
            await self.observer.close()
        if self.http is not None:
            await self.http.close()

    async def post(self, room: str) -> int:
        """One more caption in ``room`` (``c001``, ``c002``…); its number."""
        assert self.http is not None
        text = f"c{len(self.posted[room]) + 1:03d}"
        body = {"events": [{"speaker": SPEAKER, "text": text, "language": "en"}]}
        headers = {"Authorization": f"Bearer {PRODUCER}"}
        url = f"{self.url}/api/v1/rooms/{room}/captions"
        async with self.http.post(url, json=body, headers=headers) as r:
            assert r.status == 202, await r.text()
            seq = int((await r.json())["accepted"][0])
        self.posted[room].append(text)
        return seq

    async def position(self, room: str) -> int:
        """The room's delivered position as the orchestrator keeps it."""
        assert self.http is not None
        url = f"{self.url}/api/v1/irc/positions/{room}"
        headers = {"Authorization": f"Bearer {READER}"}
        async with self.http.get(url, headers=headers) as r:
            assert r.status == 200, await r.text()
            return int((await r.json())["position"])

    def words(self, room: str) -> list[str]:
        return [s.word for s in self.seen.get(room, [])]

    async def until_all_seen(self, room: str, within: float) -> None:
        deadline = time.monotonic() + within
        while len(self.words(room)) < len(self.posted[room]):
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {p.name}\n{p.log_tail()}" for p in self.relays)
                raise AssertionError(f"IRC saw {self.words(room)} of {self.posted[room]}\n{logs}")
            await asyncio.sleep(0.02)

    async def until_joined(self, nick: str, room: str, within: float) -> None:
        """Until the observer saw ``nick`` join ``#room``."""
        assert self.observer is not None
        deadline = time.monotonic() + within
        while not any(
            m.command == "JOIN" and m.nick == nick and m.param(0).lower() == f"#{room}"
            for m in (protocol.parse(r.decode("utf-8", "replace")) for r in self.observer.raw)
        ):
            assert time.monotonic() < deadline, f"{nick} did not join #{room}"
            await asyncio.sleep(0.05)

    async def until_confirmed(self, room: str, seq: int, within: float) -> None:
        """Until the orchestrator keeps ``seq`` as delivered."""
        deadline = time.monotonic() + within
        while (at := await self.position(room)) < seq:
            assert time.monotonic() < deadline, f"delivered position {at} < {seq}"
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def lease_setup(
    folder: Path, database_url: str, lease_seconds: float
) -> AsyncIterator[LeaseSetup]:
    """ngircd, the orchestrator on ``database_url`` and the observer, for the block."""
    with start_server("ngircd", folder) as ircd:
        setup = LeaseSetup(folder, database_url, ircd.port, lease_seconds)
        try:
            await setup.start()
            yield setup
        finally:
            await setup.close()


async def failover(
    setup: LeaseSetup, n: int, *, interval: float, before: int, after: int, idle_kill: bool
) -> dict[str, Any]:
    """Room ``talkN`` relayed by two relays; a caption every ``interval`` s; the holder is
    killed after ``before`` captions (``idle_kill``: once the orchestrator keeps the last
    one as delivered; else halfway between two captions) and ``after`` more follow."""
    room = await setup.room(n)
    a, b = setup.relay(f"relay{n}a", room), setup.relay(f"relay{n}b", room)
    a.start()
    await setup.until_joined(a.name, room, 30)  # a holds the channel
    await setup.post(room)  # (a relay with no position yet starts at the next caption)
    await setup.until_all_seen(room, 30)
    b.start()
    await asyncio.sleep(1.0)  # b registered, asking for the lease
    for _ in range(before - 1):
        await asyncio.sleep(interval)
        seq = await setup.post(room)
    if idle_kill:
        await setup.until_confirmed(room, seq, 10)
    else:
        await asyncio.sleep(interval / 2)
    holder = setup.seen[room][-1].nick
    victim, survivor = (a, b) if holder == a.name else (b, a)
    seen_at_kill = len(setup.seen[room])
    killed_at = victim.kill()
    for i in range(after):
        await asyncio.sleep(interval / 2 if i == 0 and not idle_kill else interval)
        await setup.post(room)
    await setup.until_all_seen(room, setup.lease_seconds * 2 + 30)
    await asyncio.sleep(0.5)  # anything repeated at the end shows up too
    first = next((s for s in setup.seen[room][seen_at_kill:] if s.nick == survivor.name), None)
    words, expected = setup.words(room), setup.posted[room]
    survivor.stop()
    return {
        "failover_s": None if first is None else round(first.at - killed_at, 3),
        "lost": len([w for w in expected if w not in words]),
        "repeated": len(words) - len(set(words)),
        "in_order": words == sorted(words),
        "exactly_once": words == expected,
        "one_relay_at_a_time": all(s.nick == victim.name for s in setup.seen[room][:seen_at_kill])
        and all(s.nick == survivor.name for s in setup.seen[room][seen_at_kill:]),
        "words": words,
        "expected": expected,
    }


async def run(quick: bool, repetitions: int | None = None) -> dict[str, Any]:
    reps = repetitions or (3 if quick else 7)
    lease = 3.0
    runs = []
    with tempfile.TemporaryDirectory(prefix="plenary-lease-") as tmp, postgres_server() as pg:
        folder = Path(tmp)
        async with lease_setup(folder, pg.create_database("lease"), lease) as setup:
            for n in range(1, reps + 1):
                # Odd runs kill at an arbitrary moment (halfway between captions); even
                # runs once the holder confirmed the last caption (nothing in flight).
                result = await failover(
                    setup, n, interval=1.0, before=4, after=4, idle_kill=n % 2 == 0
                )
                print(f"lease run {n}: failover {result['failover_s']} s, lost "
                      f"{result['lost']}, repeated {result['repeated']}", flush=True)  # fmt: skip
                runs.append(result)
    times = sorted(r["failover_s"] for r in runs if r["failover_s"] is not None)
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "command": "python -m bench lease" + (" --quick" if quick else ""),
        "lease_seconds": lease,
        "repetitions": reps,
        "failover_p50_s": statistics.median(times) if times else None,
        "failover_max_s": max(times) if times else None,
        "failover_min_s": min(times) if times else None,
        "lost": sum(r["lost"] for r in runs),
        "repeated": sum(r["repeated"] for r in runs),
        "runs": [{k: v for k, v in r.items() if k not in ("words", "expected")} for r in runs],
    }


def report(data: dict[str, Any]) -> str:
    return (
        f"IRC relay lease failover (lease {data['lease_seconds']:g} s, "
        f"{data['repetitions']} kills): p50 {data['failover_p50_s']} s, max "
        f"{data['failover_max_s']} s; captions lost {data['lost']}, repeated "
        f"{data['repeated']}"
    )
