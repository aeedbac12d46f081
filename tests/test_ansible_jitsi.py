"""The jitsi role on this machine, every path under a temporary prefix.

1. ``--check --diff`` runs the whole role (apt key and source, debconf pre-seeding,
   package installation, config) and changes nothing. This machine is offline and has
   no Jitsi repository, so the key URL points at a local stand-in and the package task
   is allowed to fail in check mode only (``ignore_errors: "{{ ansible_check_mode }}"``).
   The diff, which the README recommends reading, shows no secret.
2. Check mode skips ``validate:``, so the config tasks then run for real into the
   prefix: each template is rendered and validated as on a real host (``luac5.4 -p``
   for prosody files, ``node --check`` for config.js), for both caption modes, over a
   prosody site as the jitsi-meet-prosody package leaves it (its TURN secret is kept).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.ansible_harness import run_playbook, tool

pytestmark = [
    pytest.mark.skipif(tool("ansible-playbook") is None, reason="ansible-core is not installed"),
    pytest.mark.skipif(shutil.which("luac5.4") is None, reason="luac5.4 missing (make deps)"),
    pytest.mark.skipif(shutil.which("node") is None, reason="node missing (make deps)"),
]

DOMAIN = "meet.ci.test"
SECRETS = {
    "app secret": "ci-secret-0123456789abcdef0123456789abcdef",
    "focus password": "ci-focus-password",
    "jvb password": "ci-jvb-password",
    "captioner token": "ci-captioner-token-0123456789",
    "event sync secret": "ci-event-sync-secret-0123456789",
    "TURN secret": "turn-secret-from-the-package",
}
PACKAGE_SITE = f"""-- as jitsi-meet-prosody writes it
plugin_paths = {{ "/usr/share/jitsi-meet/prosody-plugins/" }}
external_service_secret = "{SECRETS["TURN secret"]}";
VirtualHost "{DOMAIN}"
"""


def _prefix(tmp_path: Path) -> Path:
    (tmp_path / "jitsi-key.asc").write_text("stand-in for download.jitsi.org/jitsi-key.gpg.key\n")
    return tmp_path


def _package_site(prefix: Path) -> None:
    site = prefix / "etc" / "prosody" / "conf.avail" / f"{DOMAIN}.cfg.lua"
    site.parent.mkdir(parents=True)
    site.write_text(PACKAGE_SITE)


def test_check_mode_changes_nothing_and_prints_no_secret(tmp_path: Path) -> None:
    prefix = _prefix(tmp_path)
    run = run_playbook("tests/jitsi.yml", "-e", f"ci_prefix={prefix}", "--check", "--diff")
    assert run.returncode == 0, run.explain()
    assert run.recap["failed"] == 0, run.explain()
    assert run.recap["changed"] > 0, run.explain()  # it would change things …
    written = sorted(p for p in prefix.rglob("*") if p.is_file())
    assert written == [prefix / "jitsi-key.asc"]  # … but wrote nothing
    assert "config.js" in run.output  # the diff of a template without secrets is shown
    for what, secret in SECRETS.items():
        assert secret not in run.output, f"--check --diff printed the {what}"


@pytest.mark.parametrize("mode", ["bridge", "jigasi"])
def test_templates_render_and_validate(tmp_path: Path, mode: str) -> None:
    prefix = _prefix(tmp_path)
    _package_site(prefix)
    run = run_playbook(
        "tests/jitsi.yml",
        *("-e", f"ci_prefix={prefix}", "-e", "ci_install=false", "-e", f"ci_captions_mode={mode}"),
    )
    assert run.returncode == 0, run.explain()
    for what, secret in SECRETS.items():
        assert secret not in run.output, f"the run printed the {what}"
    prosody = prefix / "etc" / "prosody" / "conf.avail" / f"{DOMAIN}.cfg.lua"
    plugins = prefix / "usr" / "local" / "share" / "plenary" / "prosody-plugins"
    config_js = prefix / "etc" / "jitsi" / "meet" / f"{DOMAIN}-config.js"
    jicofo = (prefix / "etc" / "jitsi" / "jicofo" / "jicofo.conf").read_text()
    jvb = (prefix / "etc" / "jitsi" / "videobridge" / "jvb.conf").read_text()

    for lua in (
        prosody,
        plugins / "mod_token_affiliation.lua",
        plugins / "mod_plenary_async_transcription.lua",
        plugins / "mod_plenary_occupants.lua",
    ):
        subprocess.run(["luac5.4", "-p", str(lua)], check=True)
    subprocess.run(["node", "--check", str(config_js)], check=True)

    site = prosody.read_text()
    assert 'authentication = "token"' in site
    assert 'app_id = "plenary-ci"' in site and f'app_secret = "{SECRETS["app secret"]}"' in site
    assert '"token_verification";' in site and '"token_affiliation";' in site
    # the package's defaults the role keeps: unlimited jicofo/jvb, TURN credentials
    assert f'unlimited_jids = {{\n    "focus@auth.{DOMAIN}",\n    "jvb@auth.{DOMAIN}"\n}}' in site
    assert '"limits_exception";' in site
    assert f'external_service_secret = "{SECRETS["TURN secret"]}";' in site
    assert 'type = "turns"' in site and '"external_services";' in site
    # meeting → room and endpoint → name: mod_plenary_occupants on both MUCs
    conference = site.split(f'Component "conference.{DOMAIN}" "muc"')[1].split("Component")[0]
    breakout = site.split(f'Component "breakout.{DOMAIN}" "muc"')[1].split("Component")[0]
    for muc in (conference, breakout):
        assert '"plenary_occupants";' in muc.replace(
            ' "plenary_occupants";', '"plenary_occupants";'
        )
        assert 'plenary_api_prefix = "https://plenary.ci.test/api/v1/events"' in muc
        assert f'plenary_api_secret = "{SECRETS["event sync secret"]}"' in muc
        assert f'plenary_main_muc = "conference.{DOMAIN}"' in muc
    assert "event_sync_component" not in site  # optional, off by default
    assert (prefix / "etc" / "prosody" / "conf.d" / f"{DOMAIN}.cfg.lua").is_symlink()
    assert "transcription: {\n        enabled: true" in config_js.read_text()
    assert "enabled = true" in jvb.split("rest {")[1].split("}")[0]
    assert 'host = "127.0.0.1"' in jvb
    assert 'addresses = ["meet-jit-si-turnrelay.jitsi.net:443"]' in jvb  # package's STUN
    jigasi = prefix / "etc" / "jitsi" / "jigasi" / "sip-communicator.properties"
    token = SECRETS["captioner token"]
    if mode == "bridge":
        assert (
            'url-template = "ws://127.0.0.1:2700/transcribe?sessionId={{MEETING_ID}}'
            f'&sendBack=true&sendBackInterim=true&token={token}"' in jicofo
        )
        assert '"plenary_async_transcription";' in site
        assert not jigasi.exists()
    else:
        assert "url-template" not in jicofo
        assert '"plenary_async_transcription";' not in site
        props = jigasi.read_text()
        assert "VoskTranscriptionService" in props
        assert f'vosk.websocket_url={{"ko": "ws://127.0.0.1:2700/?lang=ko&token={token}"}}' in props


def test_event_sync_is_optional_and_installed_from_a_verified_archive(tmp_path: Path) -> None:
    """jitsi-contrib's event_sync is not in Debian's packages: with event_sync on, the role
    fetches the plugins archive (here a local stand-in), checks its sha256, unpacks it
    onto plugin_paths and adds the component."""
    prefix = _prefix(tmp_path)
    source = tmp_path / "src" / "prosody-plugins-main" / "event_sync"
    source.mkdir(parents=True)
    (source / "mod_event_sync_component.lua").write_text("-- stand-in\n")
    archive = prefix / "prosody-plugins.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "prosody-plugins-main", arcname="prosody-plugins-main")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    args = ("-e", f"ci_prefix={prefix}", "-e", "ci_install=false", "-e", "ci_event_sync=true")
    refused = run_playbook("tests/jitsi.yml", *args)
    assert refused.returncode != 0 and "jitsi_meet_contrib_plugins_checksum" in refused.output
    bad = run_playbook("tests/jitsi.yml", *args, "-e", "ci_contrib_checksum=sha256:" + "0" * 64)
    assert bad.returncode != 0
    run = run_playbook("tests/jitsi.yml", *args, "-e", f"ci_contrib_checksum=sha256:{digest}")
    assert run.returncode == 0, run.explain()
    contrib = prefix / "usr" / "local" / "share" / "jitsi-contrib" / "prosody-plugins"
    assert (contrib / "event_sync" / "mod_event_sync_component.lua").is_file()
    site = (prefix / "etc" / "prosody" / "conf.avail" / f"{DOMAIN}.cfg.lua").read_text()
    assert f'"{contrib}/"' in site.splitlines()[4]  # on plugin_paths
    assert f'Component "esync.{DOMAIN}" "event_sync_component"' in site
    assert 'api_prefix = "https://plenary.ci.test/api/v1"' in site
    assert f'["Authorization"] = "Bearer {SECRETS["event sync secret"]}";' in site
