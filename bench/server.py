"""Servers under test: start Plenary's captioner, read any server's memory and CPU from /proc."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from plenary.settings import PROJECT_ROOT

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(slots=True)
class Target:
    """A vosk-protocol server: its name in tables, URL and process id (for /proc).

    Plenary takes the language as ``?lang=``; a stock vosk-server serves one model and
    gets the URL unchanged."""

    name: str
    url: str
    pid: int | None
    lang_query: bool = False

    def stream_url(self, language: str = "ko") -> str:
        return f"{self.url}?lang={language}" if self.lang_query else self.url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_status(pid: int | None) -> dict[str, int]:
    """VmRSS and VmHWM in KiB (empty when the process is gone or unreadable)."""
    out: dict[str, int] = {}
    if pid is None:
        return out
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(rest.split()[0])
    return out


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of the process (all its threads), seconds."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def reset_peak(pid: int | None) -> bool:
    """Reset VmHWM to the current RSS (Linux clear_refs "5"); False when not permitted."""
    if pid is None:
        return False
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass(slots=True)
class Watch:
    """Peak RSS (sampled, plus VmHWM after a reset) and CPU seconds of one server over a run."""

    pid: int | None
    interval: float = 0.25
    peak_kib: int = 0
    hwm_reset: bool = False
    cpu_start: float | None = None
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    async def __aenter__(self) -> Watch:
        self.hwm_reset = reset_peak(self.pid)
        self.cpu_start = cpu_seconds(self.pid)
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._take()

    def _take(self) -> None:
        status = proc_status(self.pid)
        self.peak_kib = max(self.peak_kib, status.get("VmRSS", 0))
        if self.hwm_reset:
            self.peak_kib = max(self.peak_kib, status.get("VmHWM", 0))

    async def _sample(self) -> None:
        while True:
            self._take()
            await asyncio.sleep(self.interval)

    def rss_mib(self) -> float | None:
        rss = proc_status(self.pid).get("VmRSS")
        return None if rss is None else rss / 1024

    def peak_mib(self) -> float | None:
        return self.peak_kib / 1024 if self.peak_kib else None

    def cpu_used(self) -> float | None:
        now = cpu_seconds(self.pid)
        return None if now is None or self.cpu_start is None else now - self.cpu_start


async def settle(pid: int | None, *, quiet: float = 0.1, limit: float = 180.0) -> float:
    """Wait (at most ``limit`` s) until the server uses under ``quiet`` of a core: the
    backlog of the previous run must not slow the next. Returns seconds waited."""
    started = time.monotonic()
    if pid is None:
        return 0.0
    while time.monotonic() - started < limit:
        before = cpu_seconds(pid)
        await asyncio.sleep(1.0)
        after = cpu_seconds(pid)
        if before is None or after is None or after - before < quiet:
            break
    return time.monotonic() - started


async def settle_all(targets: list[Target], limit: float = 180.0) -> float:
    """Settle every server, not only the next one: a peer still working off its backlog
    would otherwise steal CPU from the server being measured."""
    waited = 0.0
    for target in targets:
        waited += await settle(target.pid, limit=max(1.0, limit - waited))
    return waited


async def wait_healthy(url: str, proc: subprocess.Popen[bytes], limit: float) -> None:
    deadline = time.monotonic() + limit
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"plenary captioner exited with code {proc.returncode}")
            with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.3)
    raise RuntimeError(f"plenary captioner not healthy at {url} after {limit:.0f} s")


@contextlib.contextmanager
def plenary_server(log_dir: Path | None = None) -> Iterator[tuple[Target, subprocess.Popen[bytes]]]:
    """Run ``plenary captioner serve`` on a free 127.0.0.1 port; stop it afterwards."""
    port = free_port()
    exe = Path(sys.executable).with_name("plenary")
    cmd = [str(exe), "captioner", "serve", "--host", "127.0.0.1", "--port", str(port)]
    log_dir = log_dir or Path(tempfile.gettempdir())
    log_path = log_dir / f"plenary-bench-{port}.log"
    env = {**os.environ, "PLENARY_LOG_LEVEL": os.environ.get("PLENARY_LOG_LEVEL", "WARNING")}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT, env=env
        )
        try:
            asyncio.run(wait_healthy(f"http://127.0.0.1:{port}/healthz", proc, 120))
            print(f"plenary captioner pid {proc.pid} on port {port} (log {log_path})", flush=True)
            yield Target("plenary", f"ws://127.0.0.1:{port}/", proc.pid, lang_query=True), proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)


def check_local(url: str) -> None:
    host = urlsplit(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"--peer must be on this machine (127.0.0.1), not {host}")
