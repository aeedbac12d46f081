"""A throwaway PostgreSQL 15 on 127.0.0.1 for tests and benchmarks.

``initdb`` into a temporary folder, ``postgres`` on a free port (trust authentication
for the user ``plenary``, durability off: nothing here outlives the run), stopped and
removed on exit. PostgreSQL refuses to run as root: as root, both run as the
``postgres`` system user (Debian's package makes it) and the folder is handed to it.

    with postgres_server() as pg:
        url = pg.create_database("t1")  # postgresql://plenary@127.0.0.1:PORT/t1

The binaries come from /usr/lib/postgresql/15/bin (Debian's ``postgresql`` package,
installed by ``make deps``) or PATH.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness.netutil import HOST, free_port

VERSION = 15
USER = "plenary"
SYSTEM_USER = "postgres"  # who runs the server when we are root
START_TIMEOUT_S = 30.0
# Fast and disposable: nothing needs to survive a crash of a test server. Enough
# connections for two nodes' pools, listeners and a benchmark's producers.
SERVER_OPTIONS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "64MB",
    # A small write-ahead log: checkpoints are cheap without fsync, and tests read it whole
    # (PostgresServer.stored_bytes).
    "min_wal_size": "32MB",
    "max_wal_size": "128MB",
    "listen_addresses": HOST,
}


class PostgresMissing(RuntimeError):
    """PostgreSQL's server binaries are not installed (apt-get install postgresql)."""


def binary(name: str) -> Path:
    """``initdb``, ``postgres``… of PostgreSQL 15 (Debian's folder), else of the newest
    PostgreSQL Debian has installed, else from PATH."""
    folders = [Path(f"/usr/lib/postgresql/{VERSION}/bin")]
    installed = Path("/usr/lib/postgresql").glob("*/bin")
    folders += sorted(installed, key=lambda f: int(f.parent.name) if f.parent.name.isdigit() else 0,
                      reverse=True)  # fmt: skip
    for folder in folders:
        if (folder / name).exists():
            return folder / name
    found = shutil.which(name)
    if found is None:
        raise PostgresMissing(f"PostgreSQL's {name} is not installed (Debian: postgresql)")
    return Path(found)


@dataclass
class PostgresServer:
    folder: Path
    port: int
    process: subprocess.Popen[bytes]
    databases: list[str] = field(default_factory=list)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@{HOST}:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` with psql as the test user; its output."""
        done = subprocess.run(
            [str(binary("psql")), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", HOST, "-p", str(self.port), "-U", USER, "-d", database, "-c", sql],
            capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        self.psql(f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        return self.url(name)

    def stored_bytes(self, database: str) -> bytes:
        """What the server has on disk for ``database`` once a checkpoint has written its
        buffers out: the database's files and the write-ahead log (of every database)."""
        self.psql("CHECKPOINT")
        oid = self.psql(f"SELECT oid FROM pg_database WHERE datname = '{database}'").strip()
        data = self.folder / "data"
        files = sorted((data / "base" / oid).iterdir()) + sorted((data / "pg_wal").iterdir())
        return b"".join(path.read_bytes() for path in files if path.is_file())

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _as_server_user() -> dict[str, int]:
    """Popen arguments that run a child as the postgres system user when we are root."""
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise PostgresMissing(f"running as root and there is no {SYSTEM_USER!r} user") from None
    return {"user": entry.pw_uid, "group": entry.pw_gid}


@contextmanager
def postgres_server(parent: Path | None = None) -> Iterator[PostgresServer]:
    """A running PostgreSQL in a temporary folder (under ``parent``), removed after."""
    initdb, server = binary("initdb"), binary("postgres")
    folder = Path(tempfile.mkdtemp(prefix="plenary-pg-", dir=parent))
    child = _as_server_user()
    if child:
        os.chown(folder, child["user"], child["group"])
    data = folder / "data"
    log = folder / "initdb.log"
    with log.open("wb") as out:
        done = subprocess.run(
            [str(initdb), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8",
             "--locale=C.UTF-8", "--no-sync"],
            stdout=out, stderr=subprocess.STDOUT, check=False, timeout=120, **child,  # type: ignore[call-overload]
        )  # fmt: skip
    if done.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {log.read_text(errors='replace')[-2000:]}")
    port = free_port()
    options = {**SERVER_OPTIONS, "port": str(port), "unix_socket_directories": str(folder)}
    args = [str(server), "-D", str(data)]
    for key, value in options.items():
        args += ["-c", f"{key}={value}"]
    server_log = (folder / "server.log").open("wb")
    process = subprocess.Popen(args, stdout=server_log, stderr=subprocess.STDOUT, **child)  # type: ignore[call-overload]
    pg = PostgresServer(folder, port, process)
    try:
        _wait_ready(pg)
        yield pg
    finally:
        process.send_signal(signal.SIGINT)  # fast shutdown: open sessions are ended
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        server_log.close()
        shutil.rmtree(folder, ignore_errors=True)


def _wait_ready(pg: PostgresServer) -> None:
    ready = binary("pg_isready")
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if pg.process.poll() is not None:
            break
        probe = subprocess.run(
            [str(ready), "-q", "-h", HOST, "-p", str(pg.port), "-U", USER],
            check=False, timeout=10,
        )  # fmt: skip
        if probe.returncode == 0:
            return
        time.sleep(0.1)
    tail = (pg.folder / "server.log").read_text(errors="replace")[-2000:]
    raise RuntimeError(f"PostgreSQL did not start on port {pg.port}: {tail}")
