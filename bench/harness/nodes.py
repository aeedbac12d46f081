"""Orchestrator nodes on loopback: ``plenary serve --no-captioner`` processes sharing one
database, and HAProxy in front of them (the Ansible role's template, as the captioner pool
harness renders it). Shared by tests/test_two_nodes.py and ``python -m bench nodes``.

    with orchestrator_nodes(folder, pg.create_database("t")) as nodes:
        create_rooms(nodes[0].url, ["plenum"])
        with orchestrator_proxy(folder, nodes) as proxy:
            proxy.url  # round robin over the nodes' /api, /r/… (health-checked on /healthz)
            nodes[0].kill()  # kill -9
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness import procs
from bench.harness.netutil import HOST, free_port
from bench.harness.pool import render_config

PRODUCER_TOKEN = "nodes-producer-token"
ADMIN_TOKEN = "nodes-admin-token"
START_TIMEOUT_S = 60.0


def raise_fd_limit() -> int:
    """This process's (and its children's) open-file limit raised to the hard limit."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def node_env(database_url: str, port: int, **extra: str) -> dict[str, str]:
    """The environment of a node on ``database_url`` listening on ``port``."""
    return {
        **os.environ,
        "PLENARY_ORCHESTRATOR__DATABASE_URL": database_url,
        "PLENARY_ORCHESTRATOR__PORT": str(port),
        "PLENARY_ORCHESTRATOR__PUBLIC_URL": f"http://{HOST}:{port}",
        "PLENARY_ORCHESTRATOR__ADMIN_TOKEN": ADMIN_TOKEN,
        "PLENARY_CAPTIONS__PRODUCER_TOKEN": PRODUCER_TOKEN,
        "PLENARY_LOG_LEVEL": "WARNING",
        **extra,
    }


def plenary() -> str:
    return str(Path(sys.executable).with_name("plenary"))


def create_rooms(base_url: str, rooms: list[str]) -> None:
    """Public rooms that keep their transcripts, made through the rooms API of a node."""
    for room in rooms:
        body = {
            "slug": room, "title": room, "caption_readers": [{"kind": "anyone"}],
            "schedule": {"start": "2030-01-01T10:00", "end": "2030-01-01T11:00",
                         "timezone": "UTC"},
            "transcript_retention_days": 1,
        }  # fmt: skip
        request = urllib.request.Request(
            f"{base_url}/api/v1/rooms", data=json.dumps(body).encode(), method="POST",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}",
                     "Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as r:
            assert r.status == 201, r.read()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except (OSError, urllib.error.URLError):
        return False


@dataclass
class Node:
    """One ``plenary serve --no-captioner`` on 127.0.0.1 (``start``, then ``wait_ready``)."""

    name: str
    folder: Path
    database_url: str
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        env = node_env(self.database_url, self.port, **self.extra_env)
        log = (self.folder / f"{self.name}.log").open("ab")
        self.proc = subprocess.Popen(
            [plenary(), "serve", "--no-captioner"], env=env, cwd=self.folder,
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()

    def wait_ready(self, limit: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                break
            if _healthy(f"{self.url}/healthz"):
                return
            time.sleep(0.1)
        log = (self.folder / f"{self.name}.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"orchestrator node {self.name} did not start: {log}")

    def kill(self) -> None:
        """kill -9: no shutdown, open connections reset."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        procs.stop(self.proc, grace=20)


@contextlib.contextmanager
def orchestrator_nodes(
    folder: Path, database_url: str, count: int = 2, extra_env: dict[str, str] | None = None
) -> Iterator[list[Node]]:
    """``count`` nodes on one database, started at once; all stopped afterwards."""
    nodes = [
        Node(f"node{n + 1}", folder, database_url, dict(extra_env or {})) for n in range(count)
    ]
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            node.wait_ready()
        yield nodes
    finally:
        for node in nodes:
            node.stop()


@dataclass
class NodeProxy:
    """HAProxy's orchestrator frontend (round robin, /healthz checks) over ``nodes``."""

    folder: Path
    nodes: list[Node]
    check_inter: str = "300ms"
    maxconn: int = 4000  # two file descriptors each, within a test runner's limit
    port: int = field(default_factory=free_port)
    captioner_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def config(self) -> str:
        return render_config(
            haproxy_captioner_port=self.captioner_port,
            haproxy_orchestrator_port=self.port,
            haproxy_stats_port=0,
            haproxy_check_inter=self.check_inter,
            haproxy_check_fall=1,
            haproxy_check_rise=1,
            haproxy_maxconn=self.maxconn,
            haproxy_captioners=[],
            haproxy_orchestrators=[{"name": n.name, "address": n.address} for n in self.nodes],
        )

    def start(self) -> None:
        path = self.folder / "haproxy-nodes.cfg"
        path.write_text(self.config())
        with (self.folder / "haproxy-nodes.log").open("ab") as log:
            self.proc = subprocess.Popen(
                ["haproxy", "-f", str(path)], cwd=self.folder, stdout=log, stderr=log
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if _healthy(f"{self.url}/healthz"):
                return
            time.sleep(0.1)
        raise RuntimeError("HAProxy did not answer /healthz for the orchestrator nodes")

    def stop(self) -> None:
        procs.stop(self.proc, grace=10)


@contextlib.contextmanager
def orchestrator_proxy(folder: Path, nodes: list[Node]) -> Iterator[NodeProxy]:
    proxy = NodeProxy(folder, nodes)
    try:
        proxy.start()
        yield proxy
    finally:
        proxy.stop()
