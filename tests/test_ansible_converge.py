"""The plenary and irc roles, converged for real on this machine (connection: local).

Everything goes into a throw-away prefix under /opt (install dir, venv, data, config,
units, nginx site, ngircd config) with the system user ``plenary-ci``; nothing listens
anywhere but 127.0.0.1. The package is the working tree: its files are copied
(``git ls-files``, so uncommitted edits count), built into a wheel, and the role's
pip installs that wheel into its fresh virtualenv. Dependencies come from pip's cache
and the local wheel folders, which keeps the first converge at about half a minute; a venv borrowing
.venv's site-packages would be quicker but would not test the role's real install.

The playbook runs twice: the second run must change nothing (idempotence, read from
the PLAY RECAP). systemd is not running here (no /run/systemd/system), so the role
runs with plenary_systemd_manage=false and the test starts the *installed* units'
ExecStart lines itself, as the units' user with their environment
(tests/ansible_harness.py), then asks /healthz. Where systemd runs, the role starts
the units itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ansible_harness import (
    ROOT,
    PlaybookRun,
    Unit,
    UnitProcess,
    run_playbook,
    systemd_running,
    tool,
)
from tests.netutil import free_port

pytestmark = [
    pytest.mark.skipif(tool("ansible-playbook") is None, reason="ansible-core is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="converging creates a system user: needs root"),
    pytest.mark.skipif(shutil.which("ngircd") is None, reason="ngircd is not installed"),
    pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed"),
    pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (make deps)"),
    pytest.mark.skipif(
        not Path("/usr/bin/python3.11").exists(), reason="the role's venv needs /usr/bin/python3.11"
    ),
]


@dataclass
class Converged:
    prefix: Path
    ports: dict[str, int]
    first: PlaybookRun
    second: PlaybookRun


def _copy_working_tree(dest: Path) -> None:
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


def _build_wheel(source: Path, dest: Path) -> Path:
    """A wheel of the copied tree: pip treats an installed wheel of the same version
    as satisfied, so the second run changes nothing (a source folder is rebuilt and
    reinstalled on every run)."""
    subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "pip"),
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            str(dest),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = dest.glob("plenary-*.whl")
    return wheel


def _fake_model(prefix: Path) -> tuple[Path, str]:
    """A zip shaped like a Vosk model (am/final.mdl inside), and its sha256."""
    archive = prefix / "downloads" / "vosk-model-ci-0.1.zip"
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("vosk-model-ci-0.1/am/final.mdl", b"not a real model")
        zf.writestr("vosk-model-ci-0.1/conf/model.conf", b"--sample-frequency=16000\n")
    return archive, hashlib.sha256(archive.read_bytes()).hexdigest()


def _self_signed(prefix: Path) -> tuple[Path, Path]:
    cert, key = prefix / "tls" / "cert.pem", prefix / "tls" / "key.pem"
    cert.parent.mkdir(parents=True)
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-subj", "/CN=plenary.ci.test", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def converged() -> Iterator[Converged]:
    prefix = Path(tempfile.mkdtemp(prefix="plenary-ci-", dir="/opt"))
    prefix.chmod(0o755)  # the service user must reach its folders inside
    try:
        source = prefix / "src"
        _copy_working_tree(source)
        wheel = _build_wheel(source, prefix / "dist")
        archive, digest = _fake_model(prefix)
        cert, key = _self_signed(prefix)
        ports = {name: free_port() for name in ("orchestrator", "captioner", "irc")}
        extra = {
            "ci_prefix": str(prefix),
            "ci_package": str(wheel),
            "ci_port_orchestrator": ports["orchestrator"],
            "ci_port_captioner": ports["captioner"],
            "ci_port_irc": ports["irc"],
            "ci_tls_certificate": str(cert),
            "ci_tls_certificate_key": str(key),
            "ci_models": [
                {
                    "lang": "ci",
                    "url": archive.as_uri(),
                    "checksum": f"sha256:{digest}",
                    "dir": "vosk-model-ci-0.1",
                }
            ],
        }
        vars_file = prefix / "extra-vars.json"
        vars_file.write_text(json.dumps(extra))
        first = run_playbook("tests/converge.yml", "-e", f"@{vars_file}")
        second = (
            run_playbook("tests/converge.yml", "-e", f"@{vars_file}")
            if first.returncode == 0
            else first
        )
        yield Converged(prefix, ports, first, second)
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


def test_first_run_converges(converged: Converged) -> None:
    run = converged.first
    assert run.returncode == 0, run.explain()
    assert run.recap.get("failed") == 0, run.explain()
    assert run.recap.get("changed", 0) > 0


def test_second_run_changes_nothing(converged: Converged) -> None:
    run = converged.second
    assert run.returncode == 0, run.explain()
    assert run.recap.get("changed") == 0, run.explain()


def test_installed_units_are_hardened(converged: Converged) -> None:
    for name in ("plenary-orchestrator.service", "plenary-captioner.service"):
        unit = Unit.parse(converged.prefix / "systemd" / name)
        d = unit.directives
        assert unit.user == "plenary-ci" and unit.group == "plenary-ci"
        assert d["Service.ProtectSystem"] == ["strict"]
        assert d["Service.ProtectHome"] == ["true"]
        assert d["Service.NoNewPrivileges"] == ["true"]
        assert d["Service.PrivateTmp"] == ["true"]
        assert d["Service.ReadWritePaths"] == [str(converged.prefix / "data")]
        assert d["Service.CapabilityBoundingSet"] == [""]
        assert d["Service.RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
        assert unit.exec_start[0] == str(converged.prefix / "opt" / "venv" / "bin" / "plenary")


def test_model_downloaded_verified_and_configured(converged: Converged) -> None:
    model = converged.prefix / "data" / "models" / "vosk-model-ci-0.1"
    assert (model / "am" / "final.mdl").is_file()
    config = (converged.prefix / "etc" / "plenary" / "plenary.toml").read_text()
    assert f'ci = "{model}"' in config
    assert oct((converged.prefix / "etc" / "plenary" / "plenary.toml").stat().st_mode)[-3:] == (
        "640"
    )


def _get_json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        return dict(json.load(response))


@pytest.mark.skipif(systemd_running(), reason="systemd runs here: the role started the units")
def test_installed_units_serve_healthz(converged: Converged, tmp_path: Path) -> None:
    """systemd is not running: start each installed unit's ExecStart under the harness."""
    assert converged.first.returncode == 0, converged.first.explain()
    units = converged.prefix / "systemd"
    orchestrator = UnitProcess(units / "plenary-orchestrator.service", tmp_path / "o.log")
    captioner = UnitProcess(units / "plenary-captioner.service", tmp_path / "c.log")
    try:
        orchestrator.start()
        captioner.start()
        orchestrator.wait_for_port(converged.ports["orchestrator"])
        captioner.wait_for_port(converged.ports["captioner"])
        health = _get_json(f"http://127.0.0.1:{converged.ports['orchestrator']}/healthz")
        assert health["status"] == "ok"
        languages = _get_json(f"http://127.0.0.1:{converged.ports['captioner']}/healthz")
        assert {"ci", "ko"} <= set(languages["languages"])  # type: ignore[arg-type]
        # The database went where the unit may write: the data folder.
        assert (converged.prefix / "data" / "plenary.sqlite3").exists()
    finally:
        orchestrator.stop()
        captioner.stop()


def _irc_list(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"NICK probe\r\nUSER probe 0 * :probe\r\n")
        received = b""
        deadline = time.monotonic() + 10
        while b" 001 " not in received and time.monotonic() < deadline:
            received += sock.recv(4096)
        sock.sendall(b"LIST\r\n")
        while b" 323 " not in received and time.monotonic() < deadline:
            received += sock.recv(4096)
        sock.sendall(b"QUIT\r\n")
        return received.decode("utf-8", "replace")


def test_ngircd_serves_the_relay_channels(converged: Converged, tmp_path: Path) -> None:
    assert converged.first.returncode == 0, converged.first.explain()
    config = converged.prefix / "etc" / "ngircd" / "ngircd.conf"
    log = (tmp_path / "ngircd.log").open("wb")
    server = subprocess.Popen(
        ["ngircd", "--nodaemon", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        port = converged.ports["irc"]
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "ngircd.log").read_text()
                time.sleep(0.05)
        listing = _irc_list(port)
        assert "#keynote" in listing and "#hall-b" in listing, listing
        assert "Live captions by Plenary" in listing
    finally:
        server.terminate()
        server.wait(10)


def test_monitoring_files_installed_and_valid(converged: Converged) -> None:
    """The role validated both with promtool; the scrape targets come from the inventory."""
    assert converged.first.returncode == 0, converged.first.explain()
    etc = converged.prefix / "etc"
    config = (etc / "prometheus" / "prometheus.yml").read_text()
    assert f"127.0.0.1:{converged.ports['orchestrator']}" in config
    assert str(etc / "prometheus" / "plenary-rules.yml") in config
    check = subprocess.run(
        ["promtool", "check", "config", str(etc / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert (converged.prefix / "grafana" / "dashboards" / "plenary.json").is_file()
    provider = (etc / "grafana" / "provisioning" / "dashboards" / "plenary.yml").read_text()
    assert str(converged.prefix / "grafana" / "dashboards") in provider


def test_jitsi_secret_kept_out_of_the_settings_file(converged: Converged) -> None:
    etc = converged.prefix / "etc" / "plenary"
    assert 'app_id = "plenary"' in (etc / "plenary.toml").read_text()
    assert "ci-secret" not in (etc / "plenary.toml").read_text()
    environment = etc / "environment"
    assert "PLENARY_JITSI__APP_SECRET=ci-secret-" in environment.read_text()
    assert oct(environment.stat().st_mode)[-3:] == "640"
