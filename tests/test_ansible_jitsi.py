"""The jitsi role on this machine, every path under a temporary prefix.

1. ``--check --diff`` runs the whole role (apt key and source, debconf pre-seeding,
   package installation, config) and changes nothing. This machine is offline and has
   no Jitsi repository, so the key URL points at a local stand-in and the package task
   is allowed to fail in check mode only (``ignore_errors: "{{ ansible_check_mode }}"``).
2. Check mode skips ``validate:``, so the config tasks then run for real into the
   prefix: each template is rendered and validated as on a real host (``luac5.4 -p``
   for prosody files, ``node --check`` for config.js), for both caption modes.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.ansible_harness import run_playbook, tool

pytestmark = [
    pytest.mark.skipif(tool("ansible-playbook") is None, reason="ansible-core is not installed"),
    pytest.mark.skipif(shutil.which("luac5.4") is None, reason="luac5.4 missing (make deps)"),
    pytest.mark.skipif(shutil.which("node") is None, reason="node missing (make deps)"),
]

DOMAIN = "meet.ci.test"
SECRET = "ci-secret-0123456789abcdef0123456789abcdef"


def _prefix(tmp_path: Path) -> Path:
    (tmp_path / "jitsi-key.asc").write_text("stand-in for download.jitsi.org/jitsi-key.gpg.key\n")
    return tmp_path


def test_check_mode_changes_nothing(tmp_path: Path) -> None:
    prefix = _prefix(tmp_path)
    run = run_playbook("tests/jitsi.yml", "-e", f"ci_prefix={prefix}", "--check", "--diff")
    assert run.returncode == 0, run.explain()
    assert run.recap["failed"] == 0, run.explain()
    assert run.recap["changed"] > 0, run.explain()  # it would change things …
    written = sorted(p for p in prefix.rglob("*") if p.is_file())
    assert written == [prefix / "jitsi-key.asc"]  # … but wrote nothing
    # The diff shows the rendered templates: token auth and the bridge URL are in them.
    assert f'app_secret = "{SECRET}"' in run.output
    assert "url-template" in run.output


@pytest.mark.parametrize("mode", ["bridge", "jigasi"])
def test_templates_render_and_validate(tmp_path: Path, mode: str) -> None:
    prefix = _prefix(tmp_path)
    run = run_playbook(
        "tests/jitsi.yml",
        "-e",
        f"ci_prefix={prefix}",
        "-e",
        "ci_install=false",
        "-e",
        f"ci_captions_mode={mode}",
    )
    assert run.returncode == 0, run.explain()
    prosody = prefix / "etc" / "prosody" / "conf.avail" / f"{DOMAIN}.cfg.lua"
    plugins = prefix / "usr" / "local" / "share" / "plenary" / "prosody-plugins"
    config_js = prefix / "etc" / "jitsi" / "meet" / f"{DOMAIN}-config.js"
    jicofo = (prefix / "etc" / "jitsi" / "jicofo" / "jicofo.conf").read_text()
    jvb = (prefix / "etc" / "jitsi" / "videobridge" / "jvb.conf").read_text()

    for lua in (
        prosody,
        plugins / "mod_token_affiliation.lua",
        plugins / "mod_plenary_async_transcription.lua",
    ):
        subprocess.run(["luac5.4", "-p", str(lua)], check=True)
    subprocess.run(["node", "--check", str(config_js)], check=True)

    site = prosody.read_text()
    assert 'authentication = "token"' in site
    assert 'app_id = "plenary-ci"' in site and f'app_secret = "{SECRET}"' in site
    assert '"token_verification";' in site and '"token_affiliation";' in site
    assert (prefix / "etc" / "prosody" / "conf.d" / f"{DOMAIN}.cfg.lua").is_symlink()
    assert "transcription: {\n        enabled: true" in config_js.read_text()
    assert "enabled = true" in jvb.split("rest {")[1].split("}")[0]
    assert 'host = "127.0.0.1"' in jvb
    jigasi = prefix / "etc" / "jitsi" / "jigasi" / "sip-communicator.properties"
    if mode == "bridge":
        assert (
            'url-template = "ws://127.0.0.1:2700/transcribe?sessionId={{MEETING_ID}}'
            '&sendBack=true&sendBackInterim=true"' in jicofo
        )
        assert '"plenary_async_transcription";' in site
        assert not jigasi.exists()
    else:
        assert "url-template" not in jicofo
        assert '"plenary_async_transcription";' not in site
        props = jigasi.read_text()
        assert "VoskTranscriptionService" in props
        assert 'vosk.websocket_url={"ko": "ws://127.0.0.1:2700/?lang=ko"}' in props
