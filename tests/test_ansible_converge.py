"""The plenary, irc and monitoring roles, converged for real on this machine in the split
topology (tests/converge.py says how), then checked file by file and run.

The playbook runs twice: the second run must change nothing (idempotence, read from the
PLAY RECAP). The site is the session's (tests/conftest.py ``converged_site``), which the
system test runs an event through afterwards. systemd is not running here (no
/run/systemd/system), so the role runs with plenary_systemd_manage=false and the test
starts the *installed* units' ExecStart lines itself, as the units' user with their
environment (tests/ansible_harness.py), then asks /healthz. Where systemd runs, the role
starts the units itself.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from bench.harness.slapd import SERVICE_PASSWORD
from tests.ansible_harness import Unit, UnitProcess, run_playbook, systemd_running, tool
from tests.converge import DEBIAN_PROMETHEUS_YML, Converged

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

UNITS = ("plenary-orchestrator.service", "plenary-captioner.service")


@pytest.fixture(scope="module")
def site(converged_site: Converged) -> Converged:
    return converged_site


@pytest.fixture
def ok(site: Converged) -> Converged:
    assert site.first.returncode == 0, site.first.explain()
    return site


def test_first_run_converges(site: Converged) -> None:
    run = site.first
    assert run.returncode == 0, run.explain()
    assert run.recap.get("failed") == 0, run.explain()
    assert run.recap.get("changed", 0) > 0


def test_second_run_changes_nothing(ok: Converged) -> None:
    run = ok.second
    assert run is not None and run.returncode == 0, run and run.explain()
    assert run.recap.get("changed") == 0, run.explain()


def test_plenary_is_this_checkout_built_into_a_wheel(ok: Converged) -> None:
    (wheel,) = (ok.prefix / "opt" / "wheels").glob("plenary-*.whl")
    python = ok.prefix / "opt" / "venv" / "bin" / "python"
    where = subprocess.run(
        [str(python), "-I", "-c", "import orchestrator, ldap; print(orchestrator.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(ok.prefix / "opt" / "venv") in where  # installed, not the source tree
    assert wheel.stat().st_size > 0


def test_split_units_are_hardened(ok: Converged) -> None:
    for name in UNITS:
        unit = Unit.parse(ok.unit(name))
        d = unit.directives
        assert unit.user == "plenary-ci" and unit.group == "plenary-ci"
        assert d["Service.ProtectSystem"] == ["strict"]
        assert d["Service.NoNewPrivileges"] == ["true"]
        assert d["Service.ReadWritePaths"] == [str(ok.prefix / "data")]
        assert d["Service.CapabilityBoundingSet"] == [""]
        assert d["Service.LimitNOFILE"] == ["65536"]
        assert unit.exec_start[0] == str(ok.prefix / "opt" / "venv" / "bin" / "plenary")
    orchestrator = Unit.parse(ok.unit(UNITS[0]))
    assert orchestrator.exec_start[1:] == ["serve", "--no-captioner"]
    assert Unit.parse(ok.unit(UNITS[1])).exec_start[1:] == ["captioner", "serve"]


def test_model_downloaded_verified_and_configured(ok: Converged) -> None:
    model = ok.prefix / "data" / "models" / "vosk-model-ci-0.1"
    assert (model / "am" / "final.mdl").is_file()
    config = ok.prefix / "etc" / "plenary" / "plenary.toml"
    assert f'ci = "{model}"' in config.read_text()
    assert oct(config.stat().st_mode)[-3:] == "640"


def test_the_decoding_graph_is_built_at_deploy_time_by_the_service_user(ok: Converged) -> None:
    """`plenary captioner prepare` ran as the service user: the Korean model's graph
    (captioner.graph, 'const' in this converge) is in the data folder before the
    captioner first starts, owned by that user, who rebuilds it if the model changes."""
    [folder] = (ok.prefix / "data" / "graphs").glob("model-const-*")
    grammar = folder / "graph" / "Gr.fst"
    assert grammar.stat().st_size > 10_000_000
    assert pwd.getpwuid(grammar.stat().st_uid).pw_name == "plenary-ci"
    config = (ok.prefix / "etc" / "plenary" / "plenary.toml").read_text()
    assert f'graph_cache = "{ok.prefix / "data" / "graphs"}"' in config


def _env(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_delivery_is_wired_and_each_unit_gets_only_its_secrets(ok: Converged) -> None:
    etc = ok.prefix / "etc" / "plenary"
    s = ok.secrets
    orchestrator, captioner = _env(etc / "orchestrator.env"), _env(etc / "captioner.env")
    assert orchestrator["PLENARY_JITSI__APP_SECRET"] == s["jitsi_app_secret"]
    assert orchestrator["PLENARY_CAPTIONS__EVENT_SYNC_SECRET"] == s["event_sync_secret"]
    producers = json.loads(orchestrator["PLENARY_CAPTIONS__PRODUCERS"])
    assert producers == {"localhost": s["captioner_producer_token"]}
    assert captioner == {
        "PLENARY_CAPTIONER__ORCHESTRATOR_URL": f"http://127.0.0.1:{ok.ports['orchestrator']}",
        "PLENARY_CAPTIONER__ORCHESTRATOR_TOKEN": s["captioner_producer_token"],
        "PLENARY_CAPTIONER__ACCESS_TOKEN": s["captioner_access_token"],
    }
    # The site's admin token and directory password (tests/converge.py site_variables).
    admin, ldap_password = ok.variables["plenary_admin_token"], SERVICE_PASSWORD
    assert orchestrator["PLENARY_ORCHESTRATOR__ADMIN_TOKEN"] == admin
    assert orchestrator["PLENARY_LDAP__BIND_PASSWORD"] == ldap_password
    toml = (etc / "plenary.toml").read_text()
    for secret in [*s.values(), admin, ldap_password]:
        assert secret not in toml
    assert 'trusted_proxies = ["127.0.0.1", "::1"]' in toml
    for name in ("orchestrator.env", "captioner.env"):
        assert oct((etc / name).stat().st_mode)[-3:] == "640"
    units = {name: Unit.parse(ok.unit(name)).directives for name in UNITS}
    assert units[UNITS[0]]["Service.EnvironmentFile"] == [f"-{etc}/orchestrator.env"]
    assert units[UNITS[1]]["Service.EnvironmentFile"] == [f"-{etc}/captioner.env"]


def test_check_diff_prints_no_secret(ok: Converged) -> None:
    """--check --diff, as the README recommends, with every secret rotated: the env files
    would change, and neither the old nor the new values are printed."""
    rotated = {key: value + "-rotated" for key, value in ok.secrets.items()}
    operator = {"name": "ci-oper", "password": "ci-oper-password-4711"}
    run = ok.run("--check", "--diff", ci_secrets=rotated, irc_ngircd_operators=[operator])
    assert run.returncode == 0, run.explain()
    assert run.recap.get("changed", 0) > 0, run.explain()  # the env files would change
    site = [ok.variables["plenary_admin_token"], SERVICE_PASSWORD]
    for secret in [*ok.secrets.values(), *rotated.values(), operator["password"], *site]:
        assert secret not in run.output, f"--diff printed a secret: {secret[:12]}…"


def test_captioner_only_host_gets_no_jitsi_secret_and_no_wildcard(tmp_path: Path) -> None:
    common = (
        "-e",
        "ci_access_token=access-0123456789abcdef",
        "-e",
        "ci_producer_token=prod-0123456789abcdef",
    )
    run = run_playbook(
        "tests/render_captioner_host.yml",
        *("-e", f"render_dest={tmp_path}", "-e", "ci_address=10.0.0.12", *common),
    )
    assert run.returncode == 0, run.explain()
    toml = (tmp_path / "plenary.toml").read_text()
    assert 'host = "10.0.0.12"' in toml
    assert "[orchestrator]" not in toml and "[jitsi]" not in toml and "0.0.0.0" not in toml
    env = _env(tmp_path / "captioner.env")
    assert env == {
        "PLENARY_CAPTIONER__ORCHESTRATOR_URL": "https://plenary.ci.test",
        "PLENARY_CAPTIONER__ORCHESTRATOR_TOKEN": "prod-0123456789abcdef",
        "PLENARY_CAPTIONER__ACCESS_TOKEN": "access-0123456789abcdef",
    }
    assert "ci-secret" not in run.output + toml + (tmp_path / "captioner.env").read_text()
    refused = run_playbook(
        "tests/render_captioner_host.yml",
        *("-e", f"render_dest={tmp_path / 'x'}", "-e", "ci_address=0.0.0.0", *common),
    )
    assert refused.returncode != 0 and "never a wildcard" in refused.output


def test_nginx_bootstraps_without_a_certificate(ok: Converged) -> None:
    """No certificate yet: HTTP with the ACME location, and nginx -t passes."""
    site = (ok.prefix / "nginx" / "sites-available" / "plenary.conf").read_text()
    assert "listen 443" not in site and "ssl_certificate" not in site
    assert f"root {ok.prefix}/acme;" in site and "/.well-known/acme-challenge/" in site
    conf = ok.prefix / "nginx-test.conf"
    conf.write_text(
        f"pid {ok.prefix}/nginx.pid; error_log stderr; events {{}}\n"
        f"http {{ include /etc/nginx/mime.types; include {ok.prefix}/nginx/sites-enabled/*; }}\n"
    )
    done = subprocess.run(
        ["nginx", "-t", "-q", "-c", str(conf)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def _get_json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        return dict(json.load(response))


def _status(url: str, request: urllib.request.Request | None = None) -> int:
    try:
        with urllib.request.urlopen(request or url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _post(url: str, token: str) -> int:
    body = json.dumps({"events": []}).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    return _status(url, urllib.request.Request(url, body, headers, method="POST"))


@pytest.mark.skipif(systemd_running(), reason="systemd runs here: the role started the units")
def test_installed_units_serve_healthz(ok: Converged, tmp_path: Path) -> None:
    """systemd is not running: start each installed unit's ExecStart under the harness."""
    orchestrator = UnitProcess(ok.unit(UNITS[0]), tmp_path / "o.log")
    captioner = UnitProcess(ok.unit(UNITS[1]), tmp_path / "c.log")
    try:
        orchestrator.start()
        captioner.start()
        orchestrator.wait_for_port(ok.ports["orchestrator"])
        captioner.wait_for_port(ok.ports["captioner"])
        health = _get_json(f"http://127.0.0.1:{ok.ports['orchestrator']}/healthz")
        assert health["status"] == "ok"
        languages = _get_json(f"http://127.0.0.1:{ok.ports['captioner']}/healthz")
        assert {"ci", "ko"} <= set(languages["languages"])  # type: ignore[arg-type]
        # The database went where the unit may write: the data folder.
        assert (ok.prefix / "data" / "plenary.sqlite3").exists()
        # Delivery is wired: the orchestrator takes the captioner's producer token (an
        # empty batch checks it) and no other; the captioner wants its access token.
        env = _env(ok.prefix / "etc" / "plenary" / "captioner.env")
        url = env["PLENARY_CAPTIONER__ORCHESTRATOR_URL"] + "/api/v1/captions"
        assert _post(url, env["PLENARY_CAPTIONER__ORCHESTRATOR_TOKEN"]) == 200
        assert _post(url, "not-a-producer-token") in (401, 403)
        assert _status(f"http://127.0.0.1:{ok.ports['captioner']}/") == 401
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


def test_ngircd_serves_the_relay_channels(ok: Converged, tmp_path: Path) -> None:
    config = ok.prefix / "etc" / "ngircd" / "ngircd.conf"
    log = (tmp_path / "ngircd.log").open("wb")
    server = subprocess.Popen(
        ["ngircd", "--nodaemon", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        port = ok.ports["irc"]
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


def test_prometheus_config_keeps_debian_alerting_and_adds_the_jobs(ok: Converged) -> None:
    etc = ok.prefix / "etc"
    path = etc / "prometheus" / "prometheus.yml"
    config = yaml.safe_load(path.read_text())
    jobs = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]
    }
    assert jobs["plenary-orchestrator"] == [f"127.0.0.1:{ok.ports['orchestrator']}"]
    assert jobs["plenary-captioner"] == [f"127.0.0.1:{ok.ports['captioner']}"]
    assert jobs["jitsi-videobridge"] == [f"127.0.0.1:{ok.ports['videobridge']}"]
    assert jobs["jicofo"] == [f"127.0.0.1:{ok.ports['jicofo']}"]
    assert config["rule_files"][-1] == str(etc / "prometheus" / "plenary-rules.yml")
    targets = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["localhost:9093"]
    if DEBIAN_PROMETHEUS_YML.exists():  # the packaged file's own jobs and labels stay
        debian = yaml.safe_load(DEBIAN_PROMETHEUS_YML.read_text())
        assert config["alerting"] == debian["alerting"]
        assert config["global"] == debian["global"]
        assert "prometheus" in jobs
    check = subprocess.run(
        ["promtool", "check", "config", str(path)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert (ok.prefix / "grafana" / "dashboards" / "plenary.json").is_file()
    provider = (etc / "grafana" / "provisioning" / "dashboards" / "plenary.yml").read_text()
    assert str(ok.prefix / "grafana" / "dashboards") in provider
