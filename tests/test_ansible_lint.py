"""ansible/ passes ansible-lint's production profile and a syntax check, offline, and
group_vars/all/vars.yml documents every role variable with the role's own default."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

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
    "monitoring_videobridge_targets",
    # read from the vault (vault_* variables)
    "plenary_jitsi_app_secret",
    "plenary_event_sync_secret",
    "plenary_admin_token",
    "plenary_captioner_access_token",
    "plenary_captioner_orchestrator_token",
    "jitsi_meet_jicofo_password",
    "jitsi_meet_jvb_password",
    "jitsi_meet_event_sync_secret",
    "jitsi_meet_captioner_token",
    "jitsi_meet_event_sync_url",
    "jitsi_meet_plenary_events_url",
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
    path = ANSIBLE_DIR / "group_vars" / "all" / "vars.yml"
    lines = path.read_text().splitlines()
    documented = yaml.safe_load(path.read_text())
    problems = []
    for role in ROLES:
        defaults = yaml.safe_load(
            (ANSIBLE_DIR / "roles" / role / "defaults" / "main.yml").read_text()
        )
        for name, value in defaults.items():
            if name not in documented:
                problems.append(f"{name} ({role}) is missing from group_vars/all/vars.yml")
                continue
            index = next(i for i, line in enumerate(lines) if line.startswith(f"{name}:"))
            if not lines[index - 1].startswith("#"):
                problems.append(f"{name} has no comment line above it")
            if name not in WIRED and documented[name] != value:
                problems.append(f"{name}: group_vars {documented[name]!r} != default {value!r}")
    assert not problems, "\n".join(problems)


VAULT_CHECK = """
- name: What the jitsi and plenary roles would see
  hosts: meet.example.org
  gather_facts: false
  tasks:
    - name: Show
      ansible.builtin.debug:
        msg: "{{ {'secret': jitsi_meet_jwt_app_secret, 'focus': jitsi_meet_jicofo_password,
          'packages': jitsi_meet_packages, 'port': plenary_orchestrator_port,
          'token': jitsi_meet_captioner_token} | to_json }}"
"""


@pytest.mark.skipif(tool("ansible-playbook") is None, reason="ansible-core is not installed")
def test_readme_vault_step_keeps_every_variable(tmp_path: Path) -> None:
    """The README's vault step: vault.yml.example copied to group_vars/all/vault.yml and
    encrypted. Ansible then reads both files of group_vars/all/, so the roles see the
    vault's secrets and every other variable of vars.yml."""
    site = tmp_path / "ansible"
    shutil.copytree(ANSIBLE_DIR, site, symlinks=True)
    example = (site / "group_vars" / "all" / "vault.yml.example").read_text()
    vault = site / "group_vars" / "all" / "vault.yml"
    vault.write_text(
        example.replace(
            'vault_plenary_jitsi_app_secret: ""',
            'vault_plenary_jitsi_app_secret: "s' + "x" * 40 + '"',
        )
        .replace(
            'vault_jitsi_meet_jicofo_password: ""', 'vault_jitsi_meet_jicofo_password: "focus-pw"'
        )
        .replace(
            'vault_plenary_captioner_access_token: ""',
            'vault_plenary_captioner_access_token: "tok-1"',
        )
    )
    password = tmp_path / "vault-password"
    password.write_text("correct horse\n")
    env = ansible_env()
    vault_tool = tool("ansible-vault") or ""
    encrypt = subprocess.run(
        [vault_tool, "encrypt", "--vault-password-file", str(password), str(vault)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert encrypt.returncode == 0, encrypt.stderr
    assert vault.read_text().startswith("$ANSIBLE_VAULT;")
    (site / "check.yml").write_text(VAULT_CHECK)
    done = subprocess.run(
        [tool("ansible-playbook") or "", "-i", "inventory.example.ini", "check.yml",
         "--vault-password-file", str(password), "-c", "local"],
        cwd=site, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert '\\"secret\\": \\"s' + "x" * 40 in done.stdout, done.stdout
    assert '\\"focus\\": \\"focus-pw\\"' in done.stdout
    assert '\\"token\\": \\"tok-1\\"' in done.stdout
    assert "jitsi-meet-tokens" in done.stdout and '\\"port\\": 8090' in done.stdout
