"""Pieces of the system test (tests/test_system_event.py) that are not the test itself.

- ``render_jitsi`` and ``setting``: the jitsi role's templates (jicofo.conf, the prosody
  site) rendered by Ansible with a site's variables, and a setting read back;
- ``Prometheus``: Debian's prometheus binary on 127.0.0.1 with a copy of a rendered
  config (only the storage folder and listen address are its own), queried over HTTP;
- ``web_login`` and ``join_token``: the attendee's path through the login form and the
  join button, with the session cookie and CSRF field a browser would carry;
- ``Units``: the installed units, from their ExecStart lines or (systemd) systemctl;
- ``eventually``: a bounded wait that fails with what it was waiting for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import aiohttp

from bench.harness import procs
from bench.harness.netutil import free_port
from bench.harness.slapd import Slapd
from tests.ansible_harness import ANSIBLE_DIR, UnitProcess, run_playbook, systemd_running
from tests.web_helpers import csrf_of

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T | None]], timeout: float, what: str, every: float = 0.5
) -> T:
    """Call ``probe`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = await probe()
        except (aiohttp.ClientError, OSError, AssertionError, KeyError, ValueError) as exc:
            value, last = None, exc
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {what} (last: {last!r})"
            )
        await asyncio.sleep(every)


# --- the jitsi role's files, rendered with a site's variables ---

RENDER_PLAY = """
- name: Render the jitsi role's templates with the site's variables
  hosts: localhost
  gather_facts: false
  vars_files: {files}
  tasks:
    - name: Render the templates
      ansible.builtin.template:
        src: "{template_dir}/{{{{ item }}}}.j2"
        dest: "{dest}/{{{{ item }}}}"
        mode: "0600"
      loop: {names}
"""


def render_jitsi(folder: Path, names: list[str], variables: dict[str, Any]) -> dict[str, str]:
    """The jitsi role's templates (e.g. ``jicofo.conf``), rendered by Ansible.

    The role's defaults, then the site's group_vars, then the role's vars/ (Ansible's
    precedence) are loaded, and ``variables`` are passed as extra vars, as a site's
    inventory and vault would give them.
    """
    role = ANSIBLE_DIR / "roles" / "jitsi"
    group_vars = ANSIBLE_DIR / "group_vars"
    site = [group_vars / "all.yml"] if (group_vars / "all.yml").is_file() else []
    if (group_vars / "all").is_dir():
        site = sorted(p for p in (group_vars / "all").glob("*.yml") if "vault" not in p.name)
    files = [role / "defaults" / "main.yml", *site, role / "vars" / "main.yml"]
    play = folder / "render-jitsi.yml"
    play.write_text(
        RENDER_PLAY.format(
            files=json.dumps([str(f) for f in files]),
            template_dir=role / "templates",
            dest=folder,
            names=json.dumps(names),
        ),
        encoding="utf-8",
    )
    extra = folder / "render-jitsi-vars.json"
    extra.write_text(json.dumps(variables), encoding="utf-8")
    run = run_playbook(str(play), "-e", f"@{extra}", timeout=180)
    assert run.returncode == 0, f"rendering {names} failed: {run.explain()}"
    return {name: (folder / name).read_text(encoding="utf-8") for name in names}


def setting(text: str, key: str) -> str:
    """A quoted string setting (HOCON ``key = "…"``, Lua ``key = "…";``) of a rendered file."""
    match = re.search(rf'^\s*{re.escape(key)}\s*=\s*(".*?(?<!\\)")\s*;?\s*$', text, re.M)
    assert match, f"the rendered file sets no {key}:\n{text}"
    value: str = json.loads(match.group(1))
    return value


# --- Prometheus ---


class Prometheus:
    """Debian's prometheus with a copy of a rendered config; storage and address are its own."""

    def __init__(self, config: Path, folder: Path) -> None:
        self.folder = folder
        self.config = folder / "prometheus.yml"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(config, self.config)
        self.port = free_port()
        self.log = folder / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus is not installed"
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [binary, f"--config.file={self.config}",
                 f"--storage.tsdb.path={self.folder / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def log_tail(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-2000:]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{self.url}/api/v1/query", params={"query": expr}) as response,
        ):
            body = await response.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def stop(self) -> None:
        procs.stop(self.process, grace=20)


# --- the attendee's web path ---


async def web_login(http: aiohttp.ClientSession, base: str, username: str, password: str) -> None:
    """Log in through the login form (CSRF field, session cookie), as a browser does."""
    async with http.get(f"{base}/login") as page:
        assert page.status == 200, f"GET /login: {page.status}"
        csrf = csrf_of(await page.text())
    form = {"username": username, "password": password, "csrf_token": csrf, "next": "/"}
    async with http.post(f"{base}/login/ldap", data=form, allow_redirects=False) as answer:
        body = await answer.text()
        assert answer.status in (302, 303), f"LDAP login of {username}: {answer.status} {body}"


async def join_token(http: aiohttp.ClientSession, base: str, slug: str) -> tuple[str, str]:
    """Press the room page's join button; (the Jitsi URL it redirects to, its jwt)."""
    async with http.get(f"{base}/r/{slug}") as page:
        assert page.status == 200, f"GET /r/{slug}: {page.status}"
        csrf = csrf_of(await page.text())
    async with http.post(
        f"{base}/r/{slug}/join", data={"csrf_token": csrf, "mode": "video"}, allow_redirects=False
    ) as answer:
        body = await answer.text()
        assert answer.status == 303, f"join {slug}: {answer.status} {body[:500]}"
        location = answer.headers["Location"]
    jwt = parse_qs(urlsplit(location).query).get("jwt", [""])[0]
    assert jwt, f"the join redirect carries no jwt: {location}"
    return location, jwt


# --- the site's processes and small waits ---


def start_slapd(folder: Path, port: int) -> Slapd:
    """tests/slapd.py's directory on ``port``, chosen before the converge named it."""
    folder.mkdir(parents=True, exist_ok=True)
    server = Slapd(folder, port)
    server.write_config()
    server.start()
    server.load()
    return server


class Units:
    """The installed units: started from their ExecStart lines (no systemd here), or by
    systemctl where systemd is PID 1 (the unit files are linked in for the test)."""

    def __init__(self, unit_dir: Path, logs: Path) -> None:
        self.unit_dir = unit_dir
        self.logs = logs
        self.systemd = systemd_running()
        self.running: dict[str, UnitProcess] = {}

    def _systemctl(self, *args: str) -> None:
        subprocess.run(["systemctl", *args], check=True, capture_output=True, timeout=60)

    def start(self, name: str) -> None:
        if self.systemd:
            self._systemctl("link", str(self.unit_dir / name))
            self._systemctl("start", name)
            self.running[name] = UnitProcess(self.unit_dir / name, self.logs / f"{name}.log")
            return
        unit = UnitProcess(self.unit_dir / name, self.logs / f"{name}.log")
        unit.start()
        self.running[name] = unit

    def wait_for_port(self, name: str, port: int, timeout: float = 90) -> None:
        if not self.systemd:
            self.running[name].wait_for_port(port, timeout)
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                return
            time.sleep(0.1)
        raise RuntimeError(f"{name} does not listen on {port} (journalctl -u {name})")

    def kill9(self, name: str) -> None:
        if self.systemd:
            self._systemctl("kill", "--signal=SIGKILL", name)
            return
        unit = self.running[name]
        assert unit.process is not None
        os.killpg(unit.process.pid, signal.SIGKILL)
        unit.process.wait(10)

    def stop_all(self) -> None:
        for name, unit in self.running.items():
            if self.systemd:
                with contextlib.suppress(subprocess.SubprocessError):
                    self._systemctl("stop", name)
                    self._systemctl("disable", name)
            else:
                unit.stop()


async def api(http: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> Any:
    async with http.request(method, url, **kw) as response:
        text = await response.text()
        is_json = response.content_type == "application/json"
        return response.status, (json.loads(text) if is_json else text)


async def holds(value: bool) -> bool:
    return value


async def listening(port: int) -> bool:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()
    return True


def session_cookie(http: aiohttp.ClientSession) -> tuple[str, str] | None:
    for morsel in http.cookie_jar:
        if morsel.key == "plenary_session":
            return morsel.key, morsel.value
    return None


async def wait_js(page: Any, expression: str, timeout: float) -> None:
    async def probe() -> bool:
        return bool(await page.evaluate(expression))

    await eventually(probe, timeout, expression, every=0.2)
