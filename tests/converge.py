"""Converge the plenary, irc and monitoring roles for real on this machine, in the split
topology, into a throw-away prefix; reused by tests/test_ansible_converge.py and the
system test.

    with converged({"plenary_admin_token": "…"}) as site:
        assert site.first.returncode == 0, site.first.explain()
        site.prefix / "systemd" / "plenary-orchestrator.service"   # installed units
        site.ports["orchestrator"], site.ports["captioner"], site.ports["irc"]
        site.secrets["captioner_access_token"]                     # what the role was given

What it does, as an admin's run would (ansible/tests/converge.yml holds the variables):
the working tree (``git ls-files``, so uncommitted edits count) is copied under the
prefix and the role builds its wheel from that copy on the "controller" and pip-installs
it into a fresh virtualenv; the orchestrator unit (``plenary serve --no-captioner``) and a
separate captioner unit get their own environment files (the captioner: its producer
and access tokens, never the Jitsi secret); ngircd's config and Prometheus's config
(merged into a copy of Debian's packaged prometheus.yml) are written. No TLS certificate
exists, so the nginx site is the bootstrap one (HTTP with the ACME location only).

The playbook runs twice (``twice=False`` skips the second run); the second must change
nothing. ``extra`` variables override the converge's own (``-e``). Needs root (a system
user ``plenary-ci`` is created), ansible-core, ngircd, promtool, nginx, python3.11.
Nothing is started: see tests.ansible_harness.UnitProcess for running the installed units.

One site serves the whole session (the ``converged_site`` fixture in tests/conftest.py,
``site_variables`` below): tests/test_ansible_converge.py checks its files and runs, and
tests/test_system_event.py runs an event through its units. A converge takes a minute
or more; the site's directory, admin token and bridge poller change no check of the
former and are what the latter needs.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness.netutil import free_port
from bench.harness.slapd import GROUPS, PEOPLE, SERVICE_DN, SERVICE_PASSWORD
from tests.ansible_harness import ROOT, PlaybookRun, run_playbook

JITSI_SECRET = "ci-secret-0123456789abcdef0123456789abcdef"
DEBIAN_PROMETHEUS_YML = Path("/etc/prometheus/prometheus.yml")
IRC_ROOMS = [{"room": "keynote", "channel": "#keynote"}, {"room": "hall-b", "channel": "#hall-b"}]


@dataclass
class Converged:
    prefix: Path
    ports: dict[str, int]
    secrets: dict[str, str]
    variables: dict[str, Any]
    first: PlaybookRun
    second: PlaybookRun | None = None
    vars_file: Path = field(default_factory=Path)

    def unit(self, name: str) -> Path:
        return self.prefix / "systemd" / name

    def run(self, *args: str, **extra: Any) -> PlaybookRun:
        """The converge playbook again, with more arguments (e.g. --check --diff) and
        variables layered over the converge's own."""
        more = self.prefix / "extra-vars-more.json"
        more.write_text(json.dumps(extra))
        return run_playbook(
            "tests/converge.yml", "-e", f"@{self.vars_file}", "-e", f"@{more}", *args
        )


def copy_working_tree(dest: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = ROOT / os.fsdecode(name)
        if source.is_file() and not source.is_symlink():
            target = dest / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


_GIVEN: set[int] = set()  # site_port()'s answers so far


def site_port() -> int:
    """A port free now, below the kernel's ephemeral range where it can: the site's servers
    bind it minutes after the converge rendered it, and meanwhile no outgoing connection
    and no other test's ``free_port()`` (both drawn from that range) can take it. Never
    the same port twice in a process."""
    try:
        ranges = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        below = int(ranges[0])
    except (OSError, ValueError, IndexError):
        below = 0
    for _ in range(50 if below > 20_000 else 0):
        port = random.randrange(20_000, below)
        if port in _GIVEN:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    return free_port()


def fake_model(prefix: Path) -> tuple[Path, str]:
    """A zip shaped like a Vosk model (am/final.mdl inside), and its sha256."""
    archive = prefix / "downloads" / "vosk-model-ci-0.1.zip"
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("vosk-model-ci-0.1/am/final.mdl", b"not a real model")
        zf.writestr("vosk-model-ci-0.1/conf/model.conf", b"--sample-frequency=16000\n")
    return archive, hashlib.sha256(archive.read_bytes()).hexdigest()


def ci_secrets() -> dict[str, str]:
    return {
        "jitsi_app_secret": JITSI_SECRET,
        "event_sync_secret": "ci-event-sync-" + secrets.token_hex(16),
        "captioner_access_token": "ci-access-" + secrets.token_hex(16),
        "captioner_producer_token": "ci-producer-" + secrets.token_hex(16),
        "irc_oper_password": "ci-oper-" + secrets.token_hex(16),
    }


def site_variables(admin_token: str, ldap_port: int) -> dict[str, Any]:
    """Layered over the converge's own for the session's site: the directory (a slapd
    the system test starts on ``ldap_port``), the admin token, Plenary's poller of the
    videobridge's legacy /colibri/stats (beside Prometheus's native scrape of its
    /metrics; the system test's fake bridge serves both)."""
    return {
        "plenary_admin_token": admin_token,
        "plenary_ldap": {
            "enabled": True,
            "url": f"ldap://127.0.0.1:{ldap_port}",
            "bind_dn": SERVICE_DN,
            "bind_password": SERVICE_PASSWORD,
            "user_base": PEOPLE,
            "group_base": GROUPS,
            "timeout": 5.0,
        },
        "plenary_metrics_bridges": ["http://127.0.0.1:{{ ci_port_videobridge }}/colibri/stats"],
        "plenary_metrics_poll_interval": 2,
    }


@contextmanager
def converged(extra: dict[str, Any] | None = None, *, twice: bool = True) -> Iterator[Converged]:
    prefix = Path(tempfile.mkdtemp(prefix="plenary-ci-", dir="/opt"))
    prefix.chmod(0o755)  # the service user must reach its folders inside
    try:
        copy_working_tree(prefix / "src")
        archive, digest = fake_model(prefix)
        if DEBIAN_PROMETHEUS_YML.exists():  # what the prometheus package installs
            (prefix / "etc" / "prometheus").mkdir(parents=True)
            shutil.copy(DEBIAN_PROMETHEUS_YML, prefix / "etc" / "prometheus" / "prometheus.yml")
        names = ("orchestrator", "captioner", "irc", "videobridge", "jicofo")
        ports = {name: site_port() for name in names}
        made = ci_secrets()
        variables: dict[str, Any] = {
            "ci_prefix": str(prefix),
            "ci_source": str(prefix / "src"),
            "ci_secrets": made,
            "ci_irc_rooms": IRC_ROOMS,
            **{f"ci_port_{name}": port for name, port in ports.items()},
            "ci_models": [
                {
                    "lang": "ci",
                    "url": archive.as_uri(),
                    "checksum": f"sha256:{digest}",
                    "dir": "vosk-model-ci-0.1",
                }
            ],
            **(extra or {}),
        }
        vars_file = prefix / "extra-vars.json"
        vars_file.write_text(json.dumps(variables))
        first = run_playbook("tests/converge.yml", "-e", f"@{vars_file}")
        second = None
        if twice and first.returncode == 0:
            second = run_playbook("tests/converge.yml", "-e", f"@{vars_file}")
        yield Converged(prefix, ports, made, variables, first, second, vars_file)
    finally:
        shutil.rmtree(prefix, ignore_errors=True)
