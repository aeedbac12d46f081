"""LdapDirectory against a real slapd (tests/slapd.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import ldap
import pytest

from bench.harness.slapd import (
    BASE,
    PASSWORDS,
    PEOPLE,
    SERVICE_DN,
    SERVICE_PASSWORD,
    Slapd,
    run_slapd,
    slapd_binary,
)
from orchestrator.access.errors import IdentitySourceUnavailable, InvalidCredentials
from orchestrator.access.ldap import LdapDirectory

pytestmark = pytest.mark.skipif(slapd_binary() is None, reason="slapd is not installed")


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with run_slapd(tmp_path_factory.mktemp("slapd")) as server:
        yield server


@pytest.fixture
async def directory(slapd: Slapd) -> AsyncIterator[LdapDirectory]:
    d = LdapDirectory(slapd.settings())
    yield d
    await d.close()


def make(slapd: Slapd, **overrides: Any) -> LdapDirectory:
    return LdapDirectory(slapd.settings(**overrides))


async def test_good_login_gives_identity_with_group_of_names(directory: LdapDirectory) -> None:
    who = await directory.authenticate("alice", PASSWORDS["alice"])
    assert who.source == "ldap"
    assert who.user_id == f"uid=alice,{PEOPLE}"
    assert who.username == "alice"
    assert who.display_name == "Alice Liddell"
    assert who.email == "alice@example.org"
    assert who.groups == {"devs", "admins"}
    assert who.blocked is False


@pytest.mark.parametrize(
    ("style", "alice", "bob", "carol"),
    [
        ("groupOfNames", {"devs", "admins"}, {"devs"}, set()),
        ("groupOfUniqueNames", {"reviewers"}, {"reviewers"}, set()),
        ("posixGroup", {"staff"}, {"ops"}, {"staff"}),
        ("memberOf", {"devs", "admins"}, {"devs"}, set()),
    ],
)
async def test_groups_of_each_style(
    slapd: Slapd, style: str, alice: set[str], bob: set[str], carol: set[str]
) -> None:
    d = make(slapd, group_style=style)
    try:
        for name, groups in (("alice", alice), ("bob", bob), ("carol", carol)):
            who = await d.authenticate(name, PASSWORDS[name])
            assert who.groups == groups, (style, name)
            assert await d.groups_of(name) == groups
    finally:
        await d.close()


async def test_login_name_is_the_directorys_spelling(directory: LdapDirectory) -> None:
    # uid matching is case-insensitive in the schema; the identity carries the stored form.
    who = await directory.authenticate("ALICE", PASSWORDS["alice"])
    assert who.username == "alice"


async def test_wrong_password_is_refused(directory: LdapDirectory) -> None:
    with pytest.raises(InvalidCredentials, match="wrong user name or password"):
        await directory.authenticate("alice", PASSWORDS["bob"])


async def test_empty_password_is_refused_without_binding(
    slapd: Slapd, directory: LdapDirectory
) -> None:
    # The server itself would accept an empty password as an unauthenticated bind:
    conn = ldap.initialize(slapd.url)
    conn.simple_bind_s(f"uid=alice,{PEOPLE}", "")
    assert conn.whoami_s() == ""  # anonymous, yet "successful"
    conn.unbind_s()
    with pytest.raises(InvalidCredentials):
        await directory.authenticate("alice", "")


async def test_unknown_user_is_refused_with_the_same_message(directory: LdapDirectory) -> None:
    with pytest.raises(InvalidCredentials, match="wrong user name or password"):
        await directory.authenticate("mallory", "anything")
    assert await directory.groups_of("mallory") == frozenset()


async def test_two_entries_with_one_uid_log_nobody_in(slapd: Slapd) -> None:
    narrow = make(slapd)
    wide = make(slapd, user_base=BASE)  # sees ou=people and ou=people,ou=other
    try:
        assert (await narrow.authenticate("twin", PASSWORDS["twin"])).username == "twin"
        with pytest.raises(InvalidCredentials):
            await wide.authenticate("twin", PASSWORDS["twin"])
        assert (await wide.authenticate("alice", PASSWORDS["alice"])).username == "alice"
    finally:
        await narrow.close()
        await wide.close()


INJECTIONS = [
    "*",
    "*)(uid=*",
    "*)(|(uid=*",
    ")(|(uid=*",
    "alice)(|(uid=*",
    "alice\x00",
    "\\00",
    "\\2a",
    "admin*",
    "a*",
    "*lice",
    "alice)(objectClass=*",
    "(uid=alice)",
    "alice))(|(cn=*",
]


@pytest.mark.parametrize("name", INJECTIONS)
async def test_injection_never_widens_a_search_or_logs_in(
    directory: LdapDirectory, name: str
) -> None:
    # Every real password is tried: an injected filter that matched anyone would
    # let one of them through.
    for password in {*PASSWORDS.values(), "*"}:
        with pytest.raises(InvalidCredentials):
            await directory.authenticate(name, password)
    assert await directory.groups_of(name) == frozenset()


async def test_injection_characters_match_only_literally(directory: LdapDirectory) -> None:
    # A user whose name holds filter syntax logs in with exactly that name …
    who = await directory.authenticate("paren(x)*", PASSWORDS["paren(x)*"])
    assert who.username == "paren(x)*"
    # … and the same characters in other names match nothing.
    for near in ("paren(x)", "paren(*", "paren*", "paren(x)\\2a"):
        with pytest.raises(InvalidCredentials):
            await directory.authenticate(near, PASSWORDS["paren(x)*"])


async def test_non_ascii_user_name(directory: LdapDirectory) -> None:
    who = await directory.authenticate("홍길동", PASSWORDS["홍길동"])
    assert who.username == "홍길동"
    assert who.groups == {"한국"}
    assert who.email is None
    with pytest.raises(InvalidCredentials):
        await directory.authenticate("홍길", PASSWORDS["홍길동"])
    with pytest.raises(InvalidCredentials):
        await directory.authenticate("홍길동", PASSWORDS["alice"])


async def test_overlong_and_control_character_names_are_refused(
    directory: LdapDirectory,
) -> None:
    for name in ("a" * 257, "ali\nce", "alice\x7f", ""):
        with pytest.raises(InvalidCredentials):
            await directory.authenticate(name, "x")


async def test_wrong_service_password_fails_closed_naming_the_setting(slapd: Slapd) -> None:
    d = make(slapd, bind_password="wrong")
    try:
        with pytest.raises(IdentitySourceUnavailable, match="ldap.bind_dn"):
            await d.authenticate("alice", PASSWORDS["alice"])
    finally:
        await d.close()


async def test_anonymous_service_search_finds_nobody(slapd: Slapd) -> None:
    # The test directory forbids anonymous reads, as a real one should.
    d = make(slapd, bind_dn="", bind_password="")
    try:
        with pytest.raises(InvalidCredentials):
            await d.authenticate("alice", PASSWORDS["alice"])
    finally:
        await d.close()


async def test_slapd_stopped_mid_test_fails_closed_then_recovers(tmp_path: Path) -> None:
    with run_slapd(tmp_path / "down") as server:
        d = LdapDirectory(server.settings(timeout=2.0))
        try:
            assert (await d.authenticate("bob", PASSWORDS["bob"])).groups == {"devs"}
            server.stop()
            for _ in range(2):  # pooled connections are dead too
                with pytest.raises(IdentitySourceUnavailable) as caught:
                    await d.authenticate("bob", PASSWORDS["bob"])
                message = str(caught.value)
                assert message.startswith(f"the directory ({server.url}) is unavailable")
                assert "refused" in message
            with pytest.raises(IdentitySourceUnavailable):
                await d.groups_of("bob")
            server.start()  # same data folder: the directory is back
            assert (await d.authenticate("bob", PASSWORDS["bob"])).username == "bob"
        finally:
            await d.close()


async def test_nothing_listening_fails_closed() -> None:
    from bench.harness.netutil import free_port
    from plenary.settings import LdapSettings

    url = f"ldap://127.0.0.1:{free_port()}"
    d = LdapDirectory(LdapSettings(url=url, bind_dn=SERVICE_DN, bind_password=SERVICE_PASSWORD))
    try:
        with pytest.raises(IdentitySourceUnavailable, match=r"the directory \(ldap://127"):
            await d.authenticate("alice", "x")
    finally:
        await d.close()


async def test_start_tls_refused_by_a_plain_server_is_a_clear_error(slapd: Slapd) -> None:
    d = make(slapd, start_tls=True)
    try:
        with pytest.raises(IdentitySourceUnavailable, match="StartTLS failed") as caught:
            await d.authenticate("alice", PASSWORDS["alice"])
        assert "ldap.start_tls" in str(caught.value)
    finally:
        await d.close()


@pytest.fixture(scope="module")
def tls_slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with run_slapd(tmp_path_factory.mktemp("slapd-tls"), tls=True) as server:
        yield server


async def test_start_tls_with_the_servers_ca(tls_slapd: Slapd) -> None:
    d = make(tls_slapd, start_tls=True, ca_file=tls_slapd.ca_file)
    try:
        assert (await d.authenticate("alice", PASSWORDS["alice"])).groups == {"devs", "admins"}
    finally:
        await d.close()


async def test_ldaps_with_the_servers_ca(tls_slapd: Slapd) -> None:
    d = make(tls_slapd, url=tls_slapd.ldaps_url, ca_file=tls_slapd.ca_file)
    try:
        assert (await d.authenticate("bob", PASSWORDS["bob"])).username == "bob"
    finally:
        await d.close()


async def test_untrusted_certificate_is_refused(tls_slapd: Slapd, tmp_path: Path) -> None:
    # A CA file that does not hold the server's certificate: both TLS modes refuse.
    other = tmp_path / "other-ca.pem"
    from bench.harness.netutil import make_certificate as _certificate

    cert, _ = _certificate(tmp_path)
    other.write_bytes(cert.read_bytes())
    for overrides in ({"start_tls": True}, {"url": tls_slapd.ldaps_url}):
        d = make(tls_slapd, ca_file=other, **overrides)
        try:
            with pytest.raises(IdentitySourceUnavailable, match="unavailable"):
                await d.authenticate("alice", PASSWORDS["alice"])
        finally:
            await d.close()


async def test_cold_connections_when_pool_size_is_zero(slapd: Slapd) -> None:
    d = make(slapd, pool_size=0)
    try:
        for _ in range(3):
            assert (await d.authenticate("alice", PASSWORDS["alice"])).username == "alice"
        assert d._service.drain() == [] and d._binders.drain() == []
    finally:
        await d.close()


async def test_closed_directory_refuses(slapd: Slapd) -> None:
    d = make(slapd)
    await d.close()
    with pytest.raises(IdentitySourceUnavailable, match="closed"):
        await d.authenticate("alice", PASSWORDS["alice"])
