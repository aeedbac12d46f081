"""ansible/ passes ansible-lint's production profile and a syntax check, offline, and
group_vars/all.yml documents every role variable with the role's own default."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.ansible_harness import ANSIBLE_DIR, ROOT, ansible_env, tool

ROLES = ("jitsi", "plenary", "irc", "monitoring")
# Variables group_vars wires to a shared value (e.g. the JWT secret both sides use),
# so they differ from the role's stand-alone default on purpose.
WIRED = {
    "jitsi_meet_server_name",
    "jitsi_meet_jwt_app_id",
    "jitsi_meet_jwt_app_secret",
    "jitsi_meet_captioner_url",
    "jitsi_meet_jigasi_vosk_urls",
    "monitoring_orchestrator_targets",
    "monitoring_captioner_targets",
    "irc_channels",
}


@pytest.mark.skipif(tool("ansible-lint") is None, reason="ansible-lint is not installed")
def test_ansible_lint_production_profile() -> None:
    done = subprocess.run(
        [tool("ansible-lint") or "", "--profile", "production", "--offline", "--nocolor", "."],
        cwd=ANSIBLE_DIR,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]


@pytest.mark.skipif(tool("ansible-playbook") is None, reason="ansible-core is not installed")
def test_site_playbook_syntax() -> None:
    done = subprocess.run(
        [
            tool("ansible-playbook") or "",
            "--syntax-check",
            "-i",
            str(ANSIBLE_DIR / "inventory.example.ini"),
            str(ANSIBLE_DIR / "site.yml"),
        ],
        cwd=ROOT,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_inventory_example_has_every_group() -> None:
    text = (ANSIBLE_DIR / "inventory.example.ini").read_text()
    for group in ("jitsi", "orchestrator", "captioner", "irc", "monitoring"):
        assert f"[{group}]" in text


def test_group_vars_document_every_role_variable() -> None:
    path = ANSIBLE_DIR / "group_vars" / "all.yml"
    lines = path.read_text().splitlines()
    documented = yaml.safe_load(path.read_text())
    problems = []
    for role in ROLES:
        defaults = yaml.safe_load(
            (ANSIBLE_DIR / "roles" / role / "defaults" / "main.yml").read_text()
        )
        for name, value in defaults.items():
            if name not in documented:
                problems.append(f"{name} ({role}) is missing from group_vars/all.yml")
                continue
            index = next(i for i, line in enumerate(lines) if line.startswith(f"{name}:"))
            if not lines[index - 1].startswith("#"):
                problems.append(f"{name} has no comment line above it")
            if name not in WIRED and documented[name] != value:
                problems.append(f"{name}: group_vars {documented[name]!r} != default {value!r}")
    assert not problems, "\n".join(problems)
