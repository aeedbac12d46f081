"""Helpers for the Ansible tests: run a playbook, read its PLAY RECAP, and start an
installed systemd unit's ExecStart without systemd.

CI machines (containers) often run no systemd (no /run/systemd/system), so the
converge test cannot `systemctl start`. ``UnitProcess`` instead parses the unit file
the role installed and runs its ExecStart as the unit's User/Group, in its
WorkingDirectory, with its Environment= and EnvironmentFile= values. The sandboxing
directives (ProtectSystem=…) are systemd's to enforce and are not emulated here.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ANSIBLE_DIR = ROOT / "ansible"
VENV_BIN = ROOT / ".venv" / "bin"


def tool(name: str) -> str | None:
    """A command from .venv/bin (ansible-core, ansible-lint) or PATH."""
    venv = VENV_BIN / name
    if venv.exists():
        return str(venv)
    return shutil.which(name)


def systemd_running() -> bool:
    return Path("/run/systemd/system").is_dir()


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_ROLES_PATH=str(ANSIBLE_DIR / "roles"),
        ANSIBLE_LOCALHOST_WARNING="0",
        ANSIBLE_DEPRECATION_WARNINGS="0",
        ANSIBLE_LOCAL_TEMP=str(Path(os.environ.get("TMPDIR", "/tmp")) / "plenary-ansible-local"),
        PATH=f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}",
    )
    env.pop("PLENARY_CONFIG", None)
    return env


@dataclass
class PlaybookRun:
    returncode: int
    output: str
    recap: dict[str, int]

    def explain(self) -> str:
        return self.output[-6000:]


RECAP = re.compile(r"^localhost\s*:\s*(.*)$", re.MULTILINE)


def parse_recap(output: str) -> dict[str, int]:
    """{'ok': 12, 'changed': 0, 'failed': 0, …} from the PLAY RECAP line of localhost."""
    found = RECAP.findall(output)
    if not found:
        return {}
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", found[-1])}


def run_playbook(playbook: str, *args: str, timeout: float = 600) -> PlaybookRun:
    command = [
        tool("ansible-playbook") or "ansible-playbook",
        "-i",
        str(ANSIBLE_DIR / "tests" / "inventory.ini"),
        str(ANSIBLE_DIR / playbook),
        *args,
    ]
    done = subprocess.run(
        command,
        cwd=ROOT,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = done.stdout + done.stderr
    return PlaybookRun(done.returncode, output, parse_recap(output))


@dataclass
class Unit:
    """The parts of a systemd service unit that say how to start it."""

    exec_start: list[str]
    user: str | None = None
    group: str | None = None
    working_directory: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    directives: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, path: Path) -> Unit:
        section = ""
        directives: dict[str, list[str]] = {}
        for raw in path.read_text(encoding="utf-8").splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
                continue
            key, _, value = line.partition("=")
            directives.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
        environment: dict[str, str] = {}
        for value in directives.get("Service.Environment", []):
            for item in shlex.split(value):
                name, _, setting = item.partition("=")
                environment[name] = setting
        for value in directives.get("Service.EnvironmentFile", []):
            optional = value.startswith("-")
            env_path = Path(value.lstrip("-"))
            if not env_path.exists():
                if optional:
                    continue
                raise FileNotFoundError(env_path)
            for line in env_path.read_text(encoding="utf-8").splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    name, _, setting = line.partition("=")
                    environment[name.strip()] = setting.strip()
        (exec_start,) = directives["Service.ExecStart"]
        return cls(
            exec_start=shlex.split(exec_start),
            user=directives.get("Service.User", [None])[-1],
            group=directives.get("Service.Group", [None])[-1],
            working_directory=directives.get("Service.WorkingDirectory", [None])[-1],
            environment=environment,
            directives=directives,
        )


class UnitProcess:
    """Run a unit's ExecStart as its user, the way systemd would start it (minus sandboxing)."""

    def __init__(self, unit_file: Path, log: Path) -> None:
        self.unit = Unit.parse(unit_file)
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
        env.update(self.unit.environment)
        if self.unit.user:
            env["HOME"] = self.unit.working_directory or "/"
            env["USER"] = self.unit.user
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.unit.exec_start,
                cwd=self.unit.working_directory,
                env=env,
                user=self.unit.user,
                group=self.unit.group,
                extra_groups=[] if self.unit.user else None,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_for_port(self, port: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.unit.exec_start} exited: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"nothing listens on {port}: {self.log_tail()}")

    def log_tail(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-3000:]

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
