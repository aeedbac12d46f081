"""Real IRC servers for tests (ngircd, InspIRCd, Ergo) and a small raw-socket client.

Each server gets its own config in a temporary folder, listens on 127.0.0.1 only on a
free port, runs in the foreground as a child process and is killed at teardown. The
servers' own flood limits are left at their defaults.

    with start_server("ngircd", tmp_path) as server:
        observer = await RawClient.connect(server.port, "watcher")

``start_server("inspircd", tmp_path, services=True)`` also starts Atheme services
(Debian's atheme-services) linked to InspIRCd over a loopback server port: NickServ,
ChanServ and SaslServ (SASL PLAIN), so accounts, SASL and registered-only channels
are real. With ``tls=True`` InspIRCd (ssl_gnutls) and Ergo also listen on ``tls_port``
with a self-signed certificate (``folder/cert.pem``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness.netutil import free_port, make_certificate
from bots.irc import protocol
from bots.irc.relay import Relay

HOST = "127.0.0.1"
VENV_BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"


def binary(name: str) -> str | None:
    """The server program: $PLENARY_<NAME>, then PATH, then .venv/bin (make builds Ergo there)."""
    override = os.environ.get(f"PLENARY_{name.upper()}")
    if override:
        return override
    found = shutil.which(name) or shutil.which(name, path=str(VENV_BIN))
    if name == "ergo" and found:
        # Debian's package "ergo" is a quantum chemistry program, not the IRC server.
        out = subprocess.run([found, "--version"], capture_output=True, text=True, check=False)
        if not out.stdout.startswith("ergo-"):
            return None
    return found


@dataclass
class IrcServer:
    kind: str
    folder: Path
    port: int = field(default_factory=free_port)
    tls_port: int = 0
    services: bool = False  # InspIRCd only: link Atheme services
    extra: str = ""  # appended to the config (ngircd: [Operator], [Channel] sections)
    connect: str = ""  # InspIRCd: <connect> blocks matched before the default one
    link_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    atheme: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        exe = binary(self.kind)
        assert exe, f"{self.kind} is not installed"
        if self.kind == "ngircd":
            return [exe, "--nodaemon", "--config", str(self.folder / "ngircd.conf")]
        if self.kind == "inspircd":
            conf = str(self.folder / "inspircd.conf")
            return [exe, "--nofork", "--nopid", "--runasroot", "--config", conf]
        return [exe, "run", "--conf", str(self.folder / "ergo.yaml")]

    def write_config(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "motd.txt").write_text("test server\n")
        writer = {"ngircd": _ngircd, "inspircd": _inspircd, "ergo": _ergo}[self.kind]
        name, text = writer(self)
        (self.folder / name).write_text(text + self.extra)
        if self.services:
            (self.folder / "atheme.conf").write_text(_atheme(self))

    def start(self) -> None:
        self.write_config()
        log = (self.folder / "server.log").open("ab")
        self.process = subprocess.Popen(
            self.command(), cwd=self.folder, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} exited: {self.log_tail()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.2):
                    if self.services:
                        self._start_services()
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.kind} did not listen on {self.port}: {self.log_tail()}")

    def _start_services(self) -> None:
        exe = binary("atheme-services")
        assert exe, "atheme-services is not installed"
        out = self.folder / "atheme.out"
        out.unlink(missing_ok=True)
        self.atheme = subprocess.Popen(
            [exe, "-n", "-c", str(self.folder / "atheme.conf"), "-D", str(self.folder),
             "-l", str(self.folder / "atheme.log"), "-p", str(self.folder / "atheme.pid")],
            cwd=self.folder, stdout=out.open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            text = out.read_text(errors="replace") if out.exists() else ""
            if "finished synching with uplink" in text:
                return
            if self.atheme.poll() is not None:
                raise RuntimeError(f"atheme exited: {text[-2000:]}")
            time.sleep(0.05)
        raise RuntimeError(f"atheme did not link to InspIRCd: {out.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.atheme is not None and self.atheme.poll() is None:
            self.atheme.send_signal(signal.SIGTERM)
            try:
                self.atheme.wait(5)
            except subprocess.TimeoutExpired:
                self.atheme.kill()
                self.atheme.wait()
        self.atheme = None
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self, down_seconds: float = 0.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def log_tail(self) -> str:
        path = self.folder / "server.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


@contextlib.contextmanager
def start_server(
    kind: str,
    folder: Path,
    *,
    tls: bool = False,
    services: bool = False,
    extra: str = "",
    connect: str = "",
) -> Iterator[IrcServer]:
    server = IrcServer(kind, folder / kind, services=services, extra=extra, connect=connect)
    if tls:
        server.tls_port = free_port()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _ngircd(server: IrcServer) -> tuple[str, str]:
    return (
        "ngircd.conf",
        f"""
[Global]
    Name = irc.plenary.test
    Info = Plenary test server
    Listen = {HOST}
    Ports = {server.port}
    MotdFile = {server.folder}/motd.txt
    PidFile = {server.folder}/ngircd.pid
[Limits]
    MaxConnectionsIP = 0
    # The default of 10 channels per client is too few for the 20-room benchmark.
    MaxJoins = 50
[Options]
    DNS = no
    Ident = no
    PAM = no
""",
    )


LINK_PASSWORD = "plenary-link-secret"


def _inspircd(server: IrcServer) -> tuple[str, str]:
    tls = services = ""
    if server.tls_port:
        cert, key = make_certificate(server.folder)
        tls = f"""
<module name="ssl_gnutls">
<sslprofile name="tls" provider="gnutls" certfile="{cert}" keyfile="{key}">
<bind address="{HOST}" port="{server.tls_port}" type="clients" sslprofile="tls">"""
    if server.services:
        # The modules Atheme's inspircd protocol module needs, and the link to it.
        services = f"""
<bind address="{HOST}" port="{server.link_port}" type="servers">
<module name="spanningtree">
<module name="services_account">
<module name="sasl">
<module name="hidechans">
<module name="chghost">
<module name="svshold">
<module name="globops">
<module name="servprotect">
<module name="deaf">
<link name="services.plenary.test" ipaddr="{HOST}" port="{server.link_port}"
      allowmask="127.0.0.0/8" sendpass="{LINK_PASSWORD}" recvpass="{LINK_PASSWORD}">
<uline server="services.plenary.test" silent="yes">
<sasl target="services.plenary.test">"""
    return (
        "inspircd.conf",
        f"""
<server name="irc.plenary.test" description="Plenary test server" network="PlenaryTest"
        id="0AA">
<admin name="test" nick="test" email="test@example.org">
<bind address="{HOST}" port="{server.port}" type="clients">
{server.connect}
<connect name="main" allow="*" localmax="100" globalmax="100" resolvehostnames="no">
<files motd="{server.folder}/motd.txt">
<performance nouserdns="yes">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default"
     target="{server.folder}/ircd.log">
<module name="cap">
<module name="ircv3">
<module name="ircv3_servertime">
<module name="ircv3_msgid">
<module name="ircv3_ctctags">
<module name="botmode">
{tls}{services}
""",
    )


def _atheme(server: IrcServer) -> str:
    """Atheme's config: InspIRCd protocol, NickServ, ChanServ, SaslServ (PLAIN)."""
    modules = [
        "protocol/inspircd", "backend/opensex", "crypto/pbkdf2v2",
        "nickserv/main", "nickserv/register", "nickserv/identify", "nickserv/info",
        "chanserv/main", "chanserv/register", "chanserv/op", "chanserv/flags",
        "chanserv/set_core", "chanserv/set_mlock", "saslserv/main", "saslserv/plain",
    ]  # fmt: skip
    loads = "".join(f'loadmodule "modules/{m}";\n' for m in modules)
    bot = 'host = "services.plenary.test"; real = "Plenary test services";'
    return f"""{loads}
serverinfo {{
    name = "services.plenary.test"; desc = "Atheme IRC Services"; numeric = "00A";
    recontime = 1; netname = "PlenaryTest"; hidehostsuffix = "users.plenary.test";
    adminname = "test"; adminemail = "test@example.org";
    registeremail = "noreply@example.org"; mta = "/bin/true";
    loglevel = {{ error; info; admin; network; }};
    maxlogins = 5; maxusers = 50; mdlimit = 30; emaillimit = 10; emailtime = 300;
    auth = none; casemapping = rfc1459;
}};
uplink "irc.plenary.test" {{
    host = "{HOST}"; password = "{LINK_PASSWORD}"; port = {server.link_port};
}};
nickserv {{ nick = "NickServ"; user = "NickServ"; {bot} }};
chanserv {{ nick = "ChanServ"; user = "ChanServ"; {bot} }};
saslserv {{ nick = "SaslServ"; user = "SaslServ"; {bot} }};
general {{
    chan = "#services"; uflags = {{ hidemail; }}; cflags = {{ verbose; }};
    flood_msgs = 0; flood_time = 10; commit_interval = 5;
    default_clone_allowed = 500; default_clone_warn = 500;
    uplink_sendq_limit = 1048576; immune_level = immune;
}};
"""


def _ergo(server: IrcServer) -> tuple[str, str]:
    tls = ""
    if server.tls_port:
        cert, key = make_certificate(server.folder)
        tls = f"""
        "{HOST}:{server.tls_port}":
            tls:
                cert: {cert}
                key: {key}"""
    return (
        "ergo.yaml",
        f"""
network:
    name: PlenaryTest
server:
    name: irc.plenary.test
    listeners:
        "{HOST}:{server.port}": {{}}{tls}
    casemapping: "ascii"
    enforce-utf8: true
    lookup-hostnames: false
    check-ident: false
    coerce-ident: '~u'
    motd: {server.folder}/motd.txt
    max-sendq: 96k
    ip-limits:
        count: false
        throttle: false
    ip-cloaking:
        enabled: true
        netname: "irc"
        cidr-len-ipv4: 32
        cidr-len-ipv6: 64
        num-bits: 64
accounts:
    authentication-enabled: true
    registration:
        enabled: true
        allow-before-connect: true
        bcrypt-cost: 4
        throttling:
            enabled: false
    login-throttling:
        enabled: false
    nick-reservation:
        enabled: true
        method: strict
        force-nick-equals-account: true
    multiclient:
        enabled: true
        allowed-by-default: true
        always-on: "disabled"
channels:
    default-modes: +nt
    registration:
        enabled: true
logging:
    -
        method: stderr
        type: "* -userinput -useroutput"
        level: info
lock-file: "{server.folder}/ircd.lock"
datastore:
    path: {server.folder}/ircd.db
    autoupgrade: true
languages:
    enabled: false
limits:
    nicklen: 32
    identlen: 20
    channellen: 64
    awaylen: 390
    kicklen: 390
    topiclen: 390
    monitor-entries: 100
    whowas-entries: 100
    chan-list-modes: 60
    registration-messages: 1024
    multiline:
        max-bytes: 4096
        max-lines: 100
fakelag:
    enabled: true
    window: 1s
    burst-limit: 5
    messages-per-window: 2
    cooldown: 2s
history:
    enabled: false
""",
    )


class RawClient:
    """An independent IRC client for assertions: it records every line as received."""

    def __init__(self, port: int, nick: str, caps: tuple[str, ...] = ()) -> None:
        self.port = port
        self.nick = nick
        self.caps = caps  # IRCv3 capabilities to ask for (server-time, message-tags)
        self.raw: list[bytes] = []  # every line received, CR LF included
        self.privmsgs: list[protocol.Message] = []
        self.privmsg_raw: list[bytes] = []  # PRIVMSG lines exactly as received
        self.notices: list[protocol.Message] = []
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._welcome = asyncio.Event()
        self._joined: set[str] = set()

    @classmethod
    async def connect(
        cls, port: int, nick: str, *channels: str, caps: tuple[str, ...] = ()
    ) -> RawClient:
        client = cls(port, nick, caps)
        await client.open()
        for channel in channels:
            await client.join(channel)
        return client

    async def open(self) -> None:
        self._welcome = asyncio.Event()
        self._reader, self._writer = await asyncio.open_connection(HOST, self.port)
        self._task = asyncio.create_task(self._read())
        if self.caps:
            self.send(f"CAP REQ :{' '.join(self.caps)}")
            self.send("CAP END")
        self.send(f"NICK {self.nick}")
        self.send(f"USER {self.nick} 0 * :observer")
        await asyncio.wait_for(self._welcome.wait(), 10)

    def send(self, line: str) -> None:
        assert self._writer is not None
        self._writer.write(line.encode() + b"\r\n")

    async def join(self, channel: str, key: str = "") -> None:
        self.send(f"JOIN {channel} {key}".rstrip())
        for _ in range(200):
            if channel.lower() in self._joined:
                return
            await asyncio.sleep(0.025)
        raise TimeoutError(f"{self.nick} could not join {channel}")

    async def _read(self) -> None:
        assert self._reader is not None
        while True:
            try:
                raw = await self._reader.readuntil(b"\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            self.raw.append(raw)
            msg = protocol.parse(raw.decode("utf-8", "replace"))
            if msg.command == "PING":
                self.send(f"PONG :{msg.param(-1)}")
            elif msg.command in {"376", "422"}:
                self._welcome.set()
            elif msg.command == "JOIN" and msg.nick == self.nick:
                self._joined.add(msg.param(0).lower())
            elif msg.command == "PRIVMSG":
                self.privmsgs.append(msg)
                self.privmsg_raw.append(raw)
            elif msg.command == "NOTICE":
                self.notices.append(msg)

    @property
    def connected(self) -> bool:
        return self._task is not None and not self._task.done()

    def numerics(self, code: str) -> list[protocol.Message]:
        """Every reply with this numeric (e.g. "475"), parsed."""
        out = [protocol.parse(r.decode("utf-8", "replace")) for r in self.raw]
        return [m for m in out if m.command == code]

    def texts(self, sender: str | None = None) -> list[str]:
        return [m.param(-1) for m in self.privmsgs if sender is None or m.nick == sender]

    async def wait_for(self, predicate: object, timeout: float) -> None:
        assert callable(predicate)
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met in time")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self.send("QUIT :bye")
                await self._writer.drain()
            self._writer.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


async def register_account(port: int, account: str, password: str, email: str = "") -> None:
    """An account made the way a user makes one: NickServ REGISTER over IRC (Ergo
    takes the password alone, Atheme also wants an e-mail address)."""
    registrar = await RawClient.connect(port, account)
    registrar.send(f"PRIVMSG NickServ :REGISTER {password} {email}".rstrip())

    def done() -> bool:
        said = " ".join(n.param(-1).lower() for n in registrar.notices)
        return "created" in said or "registered to" in said

    await until(done, 10, f"account {account} registered")
    await registrar.close()
    await asyncio.sleep(0.2)


def speaker_pieces(text: str) -> list[tuple[str, str]]:
    """(speaker, text) of each caption in one relay line: ``<A> … · <B> …``."""
    out = []
    for piece in re.split(r" · (?=<[^>\s]+> )", text):
        speaker, _, rest = piece.partition("> ")
        assert speaker.startswith("<"), text
        out.append((speaker[1:], rest))
    return out


async def until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def joined(relay: Relay) -> bool:
    return all(c.joined for client in relay.clients.values() for c in client.channels.values())


@contextlib.asynccontextmanager
async def relay_running(relay: Relay) -> AsyncIterator[Relay]:
    """Run the relay in the background for the block; cancel it afterwards."""
    task = asyncio.create_task(relay.run())
    try:
        yield relay
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
