"""A captioner pool on loopback: ``plenary captioner serve`` processes behind a real HAProxy
whose config is the Ansible role's template (ansible/roles/haproxy), rendered with the
role's defaults and loopback addresses. Shared by tests/test_captioner_pool.py and
``python -m bench pool``.

The template is rendered with plain Jinja2 rather than ansible-playbook: it uses no
Ansible filter, and a playbook run would add seconds to every test that starts a pool.
tests/test_deploy_haproxy.py renders the same template through Ansible.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml

from bench.harness import procs
from bench.harness.netutil import HOST, free_port
from plenary.settings import PROJECT_ROOT

ROLE = PROJECT_ROOT / "ansible" / "roles" / "haproxy"
# The loopback run needs no root: no chroot, no user switch, no system stats socket.
LOOPBACK = {
    "ansible_managed": "rendered by bench/harness/pool.py",
    "haproxy_chroot": "",
    "haproxy_stats_socket": "",
    "haproxy_user": "",
    "haproxy_log": "stderr format raw local0",
    "haproxy_bind_address": HOST,
    "haproxy_maxconn": 4000,  # two file descriptors each, within a test runner's limit
}


def render_config(**variables: Any) -> str:
    """haproxy.cfg from the role's template: its defaults, then LOOPBACK, then ``variables``."""
    values = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    values.update(LOOPBACK)
    values.update(variables)
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string((ROLE / "templates" / "haproxy.cfg.j2").read_text()).render(values)


def get_json(url: str, timeout: float = 2.0) -> tuple[int, dict[str, Any]]:
    """(status, body) of a JSON GET; a 503 is an answer too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@dataclass
class Captioner:
    """One ``plenary captioner serve`` process on 127.0.0.1 (started by ``start``)."""

    name: str
    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        exe = Path(sys.executable).with_name("plenary")
        env = {**os.environ, "PLENARY_LOG_LEVEL": "INFO", **self.env}
        env.pop("PLENARY_CAPTIONER__ORCHESTRATOR_URL", None)
        with (self.log_dir / f"{self.name}.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [str(exe), "captioner", "serve", "--host", HOST, "--port", str(self.port)],
                cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip

    def log(self) -> str:
        return (self.log_dir / f"{self.name}.log").read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def health(self) -> tuple[int, dict[str, Any]]:
        return get_json(f"{self.url}/healthz")

    def wait_healthy(self, limit: float = 120.0) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited; see {self.log_dir}/{self.name}.log")
            with contextlib.suppress(OSError, ValueError):
                if self.health()[0] == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not healthy after {limit:.0f} s")

    def kill(self) -> None:
        """SIGKILL, as a crash would: no close frames, no goodbye."""
        if self.proc is not None and self.alive():
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@dataclass
class HAProxy:
    """haproxy -f <rendered config> in the foreground, on loopback ports of its own."""

    folder: Path
    captioners: list[Captioner]
    check_inter: str = "300ms"
    port: int = field(default_factory=free_port)
    orchestrator_port: int = field(default_factory=free_port)
    stats_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}"

    def config(self) -> str:
        return render_config(
            haproxy_captioner_port=self.port,
            haproxy_orchestrator_port=self.orchestrator_port,
            haproxy_stats_port=self.stats_port,
            haproxy_check_inter=self.check_inter,
            haproxy_check_fall=1,
            haproxy_check_rise=1,
            haproxy_captioners=[{"name": c.name, "address": c.address} for c in self.captioners],
        )

    def start(self) -> None:
        path = self.folder / "haproxy.cfg"
        path.write_text(self.config())
        check = subprocess.run(
            ["haproxy", "-c", "-q", "-f", str(path)], capture_output=True, check=False
        )
        if check.returncode:
            raise RuntimeError(f"haproxy -c: {check.stderr.decode()}")
        with (self.folder / "haproxy.log").open("ab") as log:
            self.proc = subprocess.Popen(
                ["haproxy", "-f", str(path)], cwd=self.folder, stdout=log, stderr=log
            )

    def states(self) -> dict[str, str]:
        """Each captioner's state in the bridge backend ("UP", "DOWN", …), from the stats page."""
        with urllib.request.urlopen(f"http://{HOST}:{self.stats_port}/;csv", timeout=2) as r:
            text = r.read().decode().lstrip("# ")
        return {
            row["svname"]: row["status"]
            for row in csv.DictReader(io.StringIO(text))
            if row["pxname"] == "captioner_bridge" and row["svname"] != "BACKEND"
        }

    def wait_states(self, want: dict[str, str], limit: float = 15.0) -> None:
        deadline = time.monotonic() + limit
        seen: dict[str, str] = {}
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                seen = self.states()
                if all(seen.get(name, "").startswith(state) for name, state in want.items()):
                    return
            time.sleep(0.1)
        raise AssertionError(f"HAProxy states {seen}, expected {want}")

    def stop(self) -> None:
        procs.stop(self.proc, grace=10)


@contextlib.contextmanager
def captioner_pool(
    folder: Path, envs: list[dict[str, str]], check_inter: str = "300ms"
) -> Iterator[tuple[HAProxy, list[Captioner]]]:
    """Captioners (one per ``envs`` entry, PLENARY_* overrides) behind HAProxy; all stopped
    afterwards. Returns once HAProxy sees every captioner up."""
    captioners = [Captioner(f"captioner{n + 1}", folder, env) for n, env in enumerate(envs)]
    proxy = HAProxy(folder, captioners, check_inter)
    try:
        for c in captioners:
            c.start()
        for c in captioners:
            c.wait_healthy()
        proxy.start()
        proxy.wait_states({c.name: "UP" for c in captioners})
        yield proxy, captioners
    finally:
        proxy.stop()
        for c in captioners:
            c.stop()
