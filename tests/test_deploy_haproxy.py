"""deploy/haproxy/haproxy.cfg is the haproxy role's template rendered for the example
inventory of a scaled site (ansible/inventories/scaled: 2 orchestrator nodes, 2 captioner
hosts, a load balancer, a database host); HAProxy accepts it, and site.yml passes a
syntax check with that inventory. After editing the template, regenerate it with
    .venv/bin/ansible-playbook -i ansible/inventories/scaled/hosts.yml \\
        ansible/tests/render_haproxy.yml
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from bench.harness.pool import render_config
from tests.ansible_harness import ANSIBLE_DIR, ROOT, ansible_env, run_playbook, tool

SCALED = ANSIBLE_DIR / "inventories" / "scaled"
DEPLOYED = ROOT / "deploy" / "haproxy" / "haproxy.cfg"
needs_ansible = pytest.mark.skipif(
    tool("ansible-playbook") is None, reason="ansible-core is not installed"
)
needs_haproxy = pytest.mark.skipif(
    shutil.which("haproxy") is None, reason="haproxy is not installed (make deps)"
)


def haproxy_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["haproxy", "-c", "-f", str(path)], capture_output=True, text=True, check=False
    )


@needs_ansible
@needs_haproxy
def test_deploy_config_equals_the_rendered_template(tmp_path: Path) -> None:
    """Rendered by Ansible with the role's own task (haproxy -c validates it first)."""
    run = run_playbook(
        "tests/render_haproxy.yml", "-i", str(SCALED / "hosts.yml"), "-e", f"render_dest={tmp_path}"
    )
    assert run.returncode == 0, run.explain()
    rendered = (tmp_path / "haproxy.cfg").read_text()
    assert DEPLOYED.read_text() == rendered, (
        "deploy/haproxy/haproxy.cfg differs from its template; regenerate it "
        "(see this test's docstring)"
    )


@needs_haproxy
def test_deploy_config_passes_haproxy_c() -> None:
    done = haproxy_check(DEPLOYED)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_haproxy
def test_role_defaults_alone_pass_haproxy_c(tmp_path: Path) -> None:
    """A load balancer with no servers listed yet still starts (it answers 503)."""
    path = tmp_path / "haproxy.cfg"
    path.write_text(render_config(ansible_managed="test"))
    done = haproxy_check(path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_deploy_config_routes_and_checks() -> None:
    text = DEPLOYED.read_text()
    bridge = text.split("\nbackend captioner_bridge\n")[1].split("\n\n")[0]
    vosk = text.split("\nbackend captioner_vosk\n")[1].split("\n\n")[0]
    orchestrators = text.split("\nbackend orchestrators\n")[1].split("\n\n")[0]
    assert "use_backend captioner_bridge if { path /transcribe }" in text
    assert "default_backend captioner_vosk" in text
    assert "balance url_param sessionId\n    hash-type consistent\n" in bridge
    assert "http-check send meth GET uri /healthz" in bridge
    assert "http-check expect status 200" in bridge
    assert "balance leastconn" in vosk and "track captioner_bridge/cap1" in vosk
    assert "balance roundrobin" in orchestrators and "uri /healthz" in orchestrators
    assert "    timeout tunnel 2h\n" in text


def test_scaled_inventory_is_consistent() -> None:
    """2 + 2 hosts, and the load balancer lists each at the address it listens on."""
    hosts = yaml.safe_load((SCALED / "hosts.yml").read_text())["all"]["children"]
    lb = yaml.safe_load((SCALED / "group_vars" / "loadbalancer.yml").read_text())
    orchestrators = hosts["orchestrator"]["hosts"]
    captioners = hosts["captioner"]["hosts"]
    assert len(orchestrators) == 2 and len(captioners) == 2
    assert len(hosts["loadbalancer"]["hosts"]) == 1 and len(hosts["database"]["hosts"]) == 1
    assert sorted(s["address"] for s in lb["haproxy_captioners"]) == sorted(
        f"{h['plenary_captioner_private_address']}:2700" for h in captioners.values()
    )
    assert sorted(s["address"] for s in lb["haproxy_orchestrators"]) == sorted(
        f"{h['plenary_orchestrator_host']}:8090" for h in orchestrators.values()
    )


@needs_ansible
def test_site_syntax_with_the_scaled_inventory() -> None:
    done = subprocess.run(
        [tool("ansible-playbook") or "", "--syntax-check", "-i", str(SCALED / "hosts.yml"),
         str(ANSIBLE_DIR / "site.yml")],
        cwd=ROOT, env=ansible_env(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@needs_ansible
def test_scaled_inventory_wires_the_pool(tmp_path: Path) -> None:
    """What each host's roles see: Jitsi and the captioners point at the load balancer,
    the orchestrator nodes at the shared PostgreSQL database (through orchestrator.env)."""
    site = tmp_path / "site"
    shutil.copytree(ANSIBLE_DIR, site, symlinks=True)
    (site / "show.yml").write_text(SHOW)
    done = subprocess.run(
        [tool("ansible-playbook") or "", "-i", "inventories/scaled/hosts.yml", "show.yml",
         "-e", "vault_postgresql_password=pw-0123456789abcdef"],
        cwd=site, env=ansible_env(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "meet.example.org captioner_url=ws://10.0.0.5:2700" in out
    assert "cap1.example.org orchestrator_url=http://10.0.0.5:8091" in out
    assert (
        "orch2.example.org database_url="
        "postgresql://plenary:pw-0123456789abcdef@10.0.0.6:5432/plenary"
    ) in out
    assert "db.example.org networks=['10.0.0.0/24']" in out


SHOW = """
- name: The pool's wiring as each host sees it
  hosts: all
  gather_facts: false
  connection: local
  tasks:
    - name: Show
      ansible.builtin.debug:
        msg: >-
          {{ inventory_hostname }} captioner_url={{ jitsi_meet_captioner_url }}
          {{ inventory_hostname }} orchestrator_url={{ plenary_captioner_orchestrator_url }}
          {{ inventory_hostname }} database_url={{ plenary_database_url }}
          {{ inventory_hostname }} networks={{ postgresql_allowed_networks | default([]) }}
"""
