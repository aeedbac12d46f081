"""Login limits that hold, against a real slapd and through the login form.

- the limiter's account key agrees with how slapd matches ``uid``: every code point
  slapd takes for a letter of a real name gives the limiter the same key;
- a Unicode variant of a locked account stays locked (before this, ``ｂｏｂ`` with
  bob's password logged in as ldap:bob while ``bob`` was locked);
- failures on made-up names from one address delay that address, briefly, and never
  lock out a real user there; the (address, account) limit stops one client guessing
  one account without refusing the owner elsewhere; clients behind a trusted proxy
  (X-Forwarded-For) are limited separately; refusals are counted in /metrics.
"""

# ruff: noqa: RUF001, RUF002  (look-alike letters are what these tests are about)

from __future__ import annotations

import asyncio
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ldap
import ldap.filter
import pytest

from bench.harness.slapd import (
    PASSWORDS,
    PEOPLE,
    SERVICE_DN,
    SERVICE_PASSWORD,
    Slapd,
    run_slapd,
    slapd_binary,
)
from orchestrator.access.ratelimit import account_key
from orchestrator.app import create_app
from plenary.settings import Settings, load_settings
from tests.web_helpers import JITSI_SECRET, token

pytestmark = pytest.mark.skipif(slapd_binary() is None, reason="slapd is not installed")

ATTACKER = "203.0.113.66"
# every assigned, printable code point: what a login form could be sent
CHARS = [chr(cp) for cp in range(0x20, 0x110000)
         if unicodedata.category(chr(cp)) not in ("Cn", "Cs", "Co", "Cc")]  # fmt: skip


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with run_slapd(tmp_path_factory.mktemp("slapd")) as server:
        yield server


# -- the key agrees with the directory ---------------------------------------------------


def _found(conn: Any, values: list[str]) -> list[str]:
    """Those of ``values`` that slapd matches to an entry: OR filters, bisected."""
    flt = "(|" + "".join(f"(uid={ldap.filter.escape_filter_chars(v)})" for v in values) + ")"
    try:
        hit = bool(conn.search_s(PEOPLE, ldap.SCOPE_ONELEVEL, flt, ["1.1"]))
    except ldap.LDAPError:
        hit = len(values) > 1  # one refused value matches nothing; find it by splitting
    if not hit or len(values) == 1:
        return values if hit else []
    half = len(values) // 2
    return _found(conn, values[:half]) + _found(conn, values[half:])


def _probes() -> list[tuple[str, str]]:
    """(real uid, template with {} where a code point goes)."""
    probes = []
    for uid in ("alice", "bob", "carol", "홍길동"):
        probes += [(uid, uid[:i] + "{}" + uid[i + 1 :]) for i in range(len(uid))]
    probes += [("alice", "alice"[:i] + "{}" + "alice"[i + 2 :]) for i in range(4)]  # ligatures
    probes += [("bob", "{}bob"), ("bob", "b{}ob"), ("bob", "bob{}")]  # spaces, invisibles
    return probes


def test_every_name_slapd_matches_has_the_accounts_key(slapd: Slapd) -> None:
    conn = ldap.initialize(slapd.url)
    conn.simple_bind_s(SERVICE_DN, SERVICE_PASSWORD)
    try:
        seen: dict[str, set[str]] = {}
        for uid, template in _probes():
            for start in range(0, len(CHARS), 2000):
                names = [template.format(c) for c in CHARS[start : start + 2000]]
                for name in _found(conn, names):
                    seen.setdefault(uid, set()).add(name)
    finally:
        conn.unbind_s()
    # the probe works: slapd does match variants the raw name would not
    assert {"ｂob", "bＯb", "Ｂob", "\u3000bob", "alİce"} <= seen["bob"] | seen["alice"]
    wrong = {name: account_key(name) for uid, names in seen.items() for name in names
             if account_key(name) != account_key(uid)}  # fmt: skip
    assert not wrong, f"slapd matches these, the limiter keys them apart: {wrong}"


# -- through the login form ---------------------------------------------------------------


def _settings(tmp_path: Path, slapd: Slapd, **login: Any) -> Settings:
    limits = {"per_account": 8, "per_address_account": 3, "per_address": 10,
              "address_delay": 0.2, "address_delay_max": 0.8, **login}  # fmt: skip
    return load_settings(
        orchestrator={"database": tmp_path / "limits.sqlite3", "login": limits,
                      "trusted_proxies": ["127.0.0.0/8"]},  # the test client plays nginx
        ldap=slapd.settings().model_dump(mode="json"),
        jitsi={"domain": "meet.example.org", "app_secret": JITSI_SECRET},
    )  # fmt: skip


@pytest.fixture
async def client(aiohttp_client: Any, slapd: Slapd, tmp_path: Path) -> Any:
    return await aiohttp_client(create_app(_settings(tmp_path, slapd)))


class Login:
    def __init__(self, status: int, retry_after: float, who: str) -> None:
        self.status, self.retry_after, self.who = status, retry_after, who


async def login(client: Any, user: str, password: str, address: str) -> Login:
    client.session.cookie_jar.clear()  # each attempt a fresh visitor
    headers = {"X-Forwarded-For": address}
    csrf = await token(client, "/login")
    r = await client.post(
        "/login/ldap",
        data={"username": user, "password": password, "csrf_token": csrf, "next": "/"},
        headers=headers,
        allow_redirects=False,
    )
    who = ""
    if r.status == 303:
        html = await (await client.get("/", headers=headers)).text()
        match = re.search(r"Logged in as ([^<]+)<", html)
        who = match.group(1) if match else ""
    return Login(r.status, float(r.headers.get("Retry-After", 0)), who)


async def limited(client: Any, name: str) -> float:
    text = await (await client.get("/metrics")).text()
    match = re.search(rf'^plenary_logins_limited_total{{limit="{name}"}} (\S+)$', text, re.M)
    assert match, f"no plenary_logins_limited_total{{limit={name!r}}}"
    return float(match.group(1))


async def test_a_unicode_variant_of_a_locked_account_stays_locked(client: Any) -> None:
    # slapd matches the fullwidth name: with no failures it logs bob in.
    ok = await login(client, "ｂｏｂ", PASSWORDS["bob"], "198.51.100.1")
    assert (ok.status, ok.who) == (303, "Bob Builder")
    before = await limited(client, "account")
    # bob is locked by failures from 8 addresses, each below its own limit of 3 …
    for i in range(8):
        assert (await login(client, "bob", "wrong", f"192.0.2.{i}")).status == 401
    # … so none of these may log in, from any address, with the right password.
    for variant in ("bob", "ｂｏｂ", "BOB", " Bob ", "b\u00adob", "𝐛𝐨𝐛"):
        refused = await login(client, variant, PASSWORDS["bob"], "198.51.100.2")
        assert refused.status == 429, variant
        assert refused.who == "" and refused.retry_after > 0
    assert await limited(client, "account") == before + 6
    assert (await login(client, "alice", PASSWORDS["alice"], "198.51.100.2")).status == 303


async def test_made_up_names_delay_an_address_but_never_lock_out(client: Any) -> None:
    # 10 failures are free, then each costs a growing delay (0.2, 0.4, 0.8, 0.8 s):
    # the attacker, waiting as told, keeps failing on names that do not exist.
    waited = 0.0
    for i in range(16):
        attempt = await login(client, f"nobody{i}", "guess", ATTACKER)
        if attempt.status == 429:
            assert attempt.retry_after <= 1  # Retry-After: whole seconds, rounded up
            waited += 1
            await asyncio.sleep(0.8)
            attempt = await login(client, f"nobody{i}", "guess", ATTACKER)
        assert attempt.status == 401, i
    assert waited >= 4
    # a real user behind the same address: at most a short delay, then in
    first = await login(client, "carol", PASSWORDS["carol"], ATTACKER)
    assert first.status in (303, 429)
    if first.status == 429:
        assert first.retry_after <= 1
        await asyncio.sleep(first.retry_after)
        first = await login(client, "carol", PASSWORDS["carol"], ATTACKER)
    assert (first.status, first.who) == (303, "Carol")
    # another client behind the same trusted proxy never waited at all
    other = await login(client, "alice", PASSWORDS["alice"], "203.0.113.7")
    assert other.status == 303


async def test_one_client_guessing_one_account_is_stopped_alone(client: Any) -> None:
    before = await limited(client, "address_account")
    for _ in range(3):
        assert (await login(client, "alice", "wrong", ATTACKER)).status == 401
    for name in ("alice", "ＡＬＩＣＥ"):
        assert (await login(client, name, PASSWORDS["alice"], ATTACKER)).status == 429
    assert await limited(client, "address_account") == before + 2
    # alice from her own address, and bob from the attacker's, are not refused
    assert (await login(client, "alice", PASSWORDS["alice"], "198.51.100.9")).status == 303
    assert (await login(client, "bob", PASSWORDS["bob"], ATTACKER)).status == 303


async def test_clients_behind_a_trusted_proxy_are_delayed_separately(
    aiohttp_client: Any, slapd: Slapd, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, slapd, per_address=5, address_delay=30,
                         address_delay_max=60)  # fmt: skip
    client = await aiohttp_client(create_app(settings))
    before = await limited(client, "address")
    for i in range(5):
        # nginx appends the address it saw; the client's own (forged) hop is ignored
        assert (await login(client, f"ghost{i}", "x", f"192.0.2.99, {ATTACKER}")).status == 401
    delayed = await login(client, "carol", PASSWORDS["carol"], ATTACKER)
    assert delayed.status == 429 and 29 <= delayed.retry_after <= 30
    assert await limited(client, "address") == before + 1
    assert (await login(client, "carol", PASSWORDS["carol"], "203.0.113.8")).status == 303
    assert (await login(client, "bob", PASSWORDS["bob"], "192.0.2.99")).status == 303
