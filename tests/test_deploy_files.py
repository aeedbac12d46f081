"""deploy/systemd and deploy/nginx are the plenary role's templates rendered with its
default variables. After editing a template, regenerate them with
    .venv/bin/ansible-playbook -i ansible/tests/inventory.ini ansible/tests/render_deploy.yml
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.ansible_harness import ROOT, run_playbook, tool

FILES = (
    "systemd/plenary-orchestrator.service",
    "systemd/plenary-captioner.service",
    "nginx/plenary.conf",
)


@pytest.mark.skipif(tool("ansible-playbook") is None, reason="ansible-core is not installed")
def test_deploy_files_equal_the_rendered_templates(tmp_path: Path) -> None:
    run = run_playbook("tests/render_deploy.yml", "-e", f"render_dest={tmp_path}")
    assert run.returncode == 0, run.explain()
    for name in FILES:
        rendered = (tmp_path / name).read_text()
        assert (
            (ROOT / "deploy" / name).read_text() == rendered
        ), f"deploy/{name} differs from its template; regenerate it (see this test's docstring)"


def test_units_are_hardened() -> None:
    for name in FILES[:2]:
        text = (ROOT / "deploy" / name).read_text()
        for line in (
            "User=plenary",
            "NoNewPrivileges=true",
            "ProtectSystem=strict",
            "ProtectHome=true",
            "PrivateTmp=true",
            "ReadWritePaths=/var/lib/plenary",
            "CapabilityBoundingSet=",
            "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
            "LimitNOFILE=65536",
        ):
            assert f"\n{line}\n" in text, f"{name} lacks {line}"
    orchestrator = (ROOT / "deploy" / FILES[0]).read_text()
    assert "EnvironmentFile=-/etc/plenary/orchestrator.env" in orchestrator
    captioner = (ROOT / "deploy" / FILES[1]).read_text()
    assert "EnvironmentFile=-/etc/plenary/captioner.env" in captioner


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_units_pass_systemd_analyze(tmp_path: Path) -> None:
    for name in FILES[:2]:
        unit = tmp_path / Path(name).name
        unit.write_text((ROOT / "deploy" / name).read_text())
        done = subprocess.run(
            # Exposure 1.7 today ("OK"); fail if hardening regresses past 2.5.
            ["systemd-analyze", "security", "--offline=true", "--threshold=25", str(unit)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def _nginx_t(tmp_path: Path, site: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid; error_log stderr;\n"
        f"events {{}}\nhttp {{ include /etc/nginx/mime.types; include {tmp_path}/site.conf; }}\n"
    )
    return subprocess.run(
        ["nginx", "-t", "-q", "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        check=False,
    )


def test_nginx_site_hardening() -> None:
    site = (ROOT / "deploy" / "nginx" / "plenary.conf").read_text()
    assert "\n    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:" in site
    metrics = site.split("location = /metrics {")[1].split("}")[0]
    assert "allow 127.0.0.1;" in metrics and "deny all;" in metrics
    for location in site.split("location ")[1:]:
        if "proxy_pass" in location:
            assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in location


@pytest.mark.skipif(tool("ansible-playbook") is None, reason="ansible-core is not installed")
@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (make deps)")
def test_nginx_site_without_a_certificate_passes_nginx_t(tmp_path: Path) -> None:
    """A fresh host: the certificate does not exist yet; the site must load anyway and
    serve the ACME challenge, so certbot --webroot can get the certificate."""
    out = tmp_path / "out"
    run = run_playbook(
        "tests/render_deploy.yml", "-e", f"render_dest={out}", "-e", "plenary_tls_ready=false"
    )
    assert run.returncode == 0, run.explain()
    site = (out / "nginx" / "plenary.conf").read_text()
    assert "ssl_certificate" not in site and "listen 443" not in site
    assert "location /.well-known/acme-challenge/ {\n        root /var/www/html;" in site
    done = _nginx_t(tmp_path, site)
    assert done.returncode == 0, done.stderr
    # … and the TLS site does not load without its certificate: the bootstrap is needed
    assert _nginx_t(tmp_path, (ROOT / "deploy" / "nginx" / "plenary.conf").read_text()).returncode


def test_prometheus_config_keeps_alerting_and_the_right_ports() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "monitoring" / "prometheus.yml").read_text())
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    jobs = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]
    }
    assert jobs == {
        "plenary-orchestrator": ["127.0.0.1:8090"],  # 8080 is the videobridge's
        "plenary-captioner": ["127.0.0.1:2700"],
        "jitsi-videobridge": ["127.0.0.1:8080"],
        "jicofo": ["127.0.0.1:8888"],
    }


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (make deps)")
def test_nginx_site_passes_nginx_t(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=plenary.example.org",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    site = (ROOT / "deploy" / "nginx" / "plenary.conf").read_text()
    site = site.replace("/etc/letsencrypt/live/plenary.example.org/fullchain.pem", str(cert))
    site = site.replace("/etc/letsencrypt/live/plenary.example.org/privkey.pem", str(key))
    done = _nginx_t(tmp_path, site)
    assert done.returncode == 0, done.stderr
