"""A real OpenLDAP slapd for the access tests and the login benchmark.

Each server gets a slapd.conf and an mdb database in a temporary folder, listens on
127.0.0.1 only (ldap:// and, with ``tls=True``, ldaps:// with a self-signed
certificate that also serves StartTLS), runs in the foreground as a child process
and is stopped at teardown. It never touches a system slapd.

    with run_slapd(tmp_path) as server:
        directory = LdapDirectory(server.settings(group_style="posixGroup"))

The directory (BASE = dc=example,dc=org):

    cn=reader               service account (SERVICE_DN / SERVICE_PASSWORD)
    ou=people   alice bob carol admin 'paren(x)*' 홍길동   (passwords: PASSWORDS)
    ou=people,ou=other  twin, and ou=people twin: two entries with one uid
    ou=groups   groupOfNames devs (alice bob), admins (alice), 한국 (홍길동)
                groupOfUniqueNames reviewers (alice, bob)
                posixGroup staff (alice carol), ops (bob)
    memberOf on each user, kept by the memberof overlay (groupOfNames only)

Anonymous clients may only bind: searches need the service account.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ldap
import ldap.modlist

from bench.harness.netutil import free_port, make_certificate
from plenary.settings import LdapSettings

HOST = "127.0.0.1"
BASE = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{BASE}"
ROOT_PASSWORD = "root-secret"
SERVICE_DN = f"cn=reader,{BASE}"
SERVICE_PASSWORD = "reader-secret"
PEOPLE = f"ou=people,{BASE}"
GROUPS = f"ou=groups,{BASE}"

PASSWORDS = {
    "alice": "alice-pw",
    "bob": "bob-pw",
    "carol": "carol-pw",
    "admin": "admin-pw",
    "paren(x)*": "paren-pw",
    "홍길동": "hong-pw",
    "twin": "twin-pw",
}
NAMES = {"alice": "Alice Liddell", "bob": "Bob Builder", "홍길동": "홍길동"}
GROUP_OF_NAMES = {"devs": ["alice", "bob"], "admins": ["alice"], "한국": ["홍길동"]}
GROUP_OF_UNIQUE_NAMES = {"reviewers": ["alice", "bob"]}
# memberUid is an IA5String: ASCII names only.
POSIX_GROUPS = {"staff": ["alice", "carol"], "ops": ["bob"]}


def slapd_binary() -> str | None:
    return shutil.which("slapd") or (
        "/usr/sbin/slapd" if Path("/usr/sbin/slapd").exists() else None
    )


def ssha(password: str) -> bytes:
    """An {SSHA} userPassword value, as slappasswd makes them."""
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return b"{SSHA}" + base64.b64encode(digest + salt)


def user_dn(uid: str, ou: str = PEOPLE) -> str:
    return f"uid={ldap.dn.escape_dn_chars(uid)},{ou}"


@dataclass
class Slapd:
    folder: Path
    port: int
    tls: bool = False
    tls_port: int = 0
    ca_file: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"ldap://{HOST}:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://{HOST}:{self.tls_port}"

    def settings(self, **overrides: Any) -> LdapSettings:
        values: dict[str, Any] = {
            "enabled": True,
            "url": self.url,
            "bind_dn": SERVICE_DN,
            "bind_password": SERVICE_PASSWORD,
            "user_base": PEOPLE,
            "group_base": GROUPS,
            "timeout": 3.0,
            "pool_size": 2,
        }
        values.update(overrides)
        return LdapSettings(**values)

    def write_config(self) -> Path:
        data = self.folder / "data"
        data.mkdir(exist_ok=True)
        lines = [
            *(f"include /etc/ldap/schema/{s}.schema"
              for s in ("core", "cosine", "inetorgperson", "nis")),
            "modulepath /usr/lib/ldap",
            "moduleload back_mdb",
            "moduleload memberof",
            f"pidfile {self.folder / 'slapd.pid'}",
            f"argsfile {self.folder / 'slapd.args'}",
            # Accept "DN with an empty password" as an anonymous bind, as permissive
            # servers do, so the tests show Plenary refuses empty passwords itself.
            "allow bind_anon_dn",
        ]  # fmt: skip
        if self.tls:
            cert, key = make_certificate(self.folder)
            self.ca_file = cert
            lines += [f"TLSCertificateFile {cert}", f"TLSCertificateKeyFile {key}"]
        lines += [
            "database mdb",
            f'suffix "{BASE}"',
            f'rootdn "{ROOT_DN}"',
            f"rootpw {ROOT_PASSWORD}",
            f"directory {data}",
            "maxsize 104857600",
            "index objectClass,uid,member,uniqueMember,memberUid eq",
            "overlay memberof",
            "access to attrs=userPassword by anonymous auth by * none",
            "access to * by users read by * none",
        ]
        conf = self.folder / "slapd.conf"
        conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return conf

    def start(self) -> None:
        binary = slapd_binary()
        assert binary, "slapd is not installed (make deps installs it)"
        conf = self.folder / "slapd.conf"
        urls = self.url + "/"
        if self.tls:
            urls += f" ldaps://{HOST}:{self.tls_port}/"
        self.process = subprocess.Popen(
            [binary, "-f", str(conf), "-h", urls, "-d", "0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"slapd exited with {self.process.returncode}: {err}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 0.2):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("slapd did not start listening within 15 s")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr:
            self.process.stderr.close()
        self.process = None

    def load(self, extra_users: int = 0) -> None:
        """The directory described in the module docstring (+ user0…userN-1 in devs)."""
        conn = ldap.initialize(self.url)
        conn.simple_bind_s(ROOT_DN, ROOT_PASSWORD)

        def add(dn: str, attrs: dict[str, list[str] | list[bytes]]) -> None:
            encoded = {
                k: [v if isinstance(v, bytes) else v.encode() for v in vs]
                for k, vs in attrs.items()
            }
            conn.add_s(dn, ldap.modlist.addModlist(encoded))

        add(BASE, {"objectClass": ["dcObject", "organization"], "dc": ["example"],
                   "o": ["Example"]})  # fmt: skip
        add(SERVICE_DN, {"objectClass": ["organizationalRole", "simpleSecurityObject"],
                         "cn": ["reader"], "userPassword": [ssha(SERVICE_PASSWORD)]})  # fmt: skip
        for ou in (PEOPLE, GROUPS, f"ou=other,{BASE}", f"ou=people,ou=other,{BASE}"):
            name = ou.split(",")[0].split("=")[1]
            add(ou, {"objectClass": ["organizationalUnit"], "ou": [name]})
        people = dict(PASSWORDS)
        people.update({f"user{i}": f"user{i}-pw" for i in range(extra_users)})
        for uid, password in people.items():
            name = NAMES.get(uid, uid.title())
            add(user_dn(uid), {
                "objectClass": ["inetOrgPerson"], "uid": [uid], "cn": [name],
                "sn": [name.split()[-1]], "mail": [f"{uid}@example.org"] if uid.isascii() else [],
                "userPassword": [ssha(password)],
            })  # fmt: skip
        add(user_dn("twin", f"ou=people,ou=other,{BASE}"), {
            "objectClass": ["inetOrgPerson"], "uid": ["twin"], "cn": ["Other Twin"],
            "sn": ["Twin"], "userPassword": [ssha(PASSWORDS["twin"])],
        })  # fmt: skip
        devs = [*GROUP_OF_NAMES["devs"], *(f"user{i}" for i in range(extra_users))]
        for cn, members in {**GROUP_OF_NAMES, "devs": devs}.items():
            add(f"cn={cn},{GROUPS}", {"objectClass": ["groupOfNames"], "cn": [cn],
                                      "member": [user_dn(m) for m in members]})  # fmt: skip
        for cn, members in GROUP_OF_UNIQUE_NAMES.items():
            add(f"cn={cn},{GROUPS}", {"objectClass": ["groupOfUniqueNames"], "cn": [cn],
                                      "uniqueMember": [user_dn(m) for m in members]})  # fmt: skip
        for gid, (cn, members) in enumerate(POSIX_GROUPS.items(), start=5000):
            add(f"cn={cn},{GROUPS}", {"objectClass": ["posixGroup"], "cn": [cn],
                                      "gidNumber": [str(gid)], "memberUid": members})  # fmt: skip
        conn.unbind_s()


@contextlib.contextmanager
def run_slapd(folder: Path, *, tls: bool = False, extra_users: int = 0) -> Iterator[Slapd]:
    """A loaded slapd in ``folder`` for the duration of the block."""
    folder.mkdir(parents=True, exist_ok=True)
    server = Slapd(folder, free_port(), tls=tls, tls_port=free_port() if tls else 0)
    server.write_config()
    server.start()
    try:
        server.load(extra_users)
        yield server
    finally:
        server.stop()
