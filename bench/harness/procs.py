"""Stopping the server processes the harness starts (one way, for benchmarks and tests)."""

from __future__ import annotations

import subprocess
from typing import Any


def stop(proc: subprocess.Popen[Any] | None, grace: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it is still running after ``grace`` seconds; reaped
    either way. Nothing to do for a process that never started or already exited."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
