"""X-Forwarded-For is believed only from orchestrator.trusted_proxies, through the real app.

The test client connects from 127.0.0.1, so with trusted_proxies = ["127.0.0.0/8"] it
plays nginx: two attendees behind it, told apart by X-Forwarded-For, are rate limited
separately on LDAP logins against a real slapd (the per-address delay). With no trusted
proxy the header is ignored and every request counts against 127.0.0.1.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from bench.harness.slapd import Slapd, run_slapd, slapd_binary
from orchestrator.app import create_app
from orchestrator.web.proxy import ClientAccessLogger, client_address, parse_trusted
from plenary.settings import ConfigError, Settings, load_settings
from tests.web_helpers import JITSI_SECRET, token

PER_ADDRESS = 20  # failures from one address before its (here 30 s) delay starts
LOGIN = {"per_address": PER_ADDRESS, "address_delay": 30, "address_delay_max": 60}


def test_client_address_walks_from_the_right() -> None:
    nets = parse_trusted(["127.0.0.1", "10.0.0.0/8", "::1"])
    assert client_address("127.0.0.1", ["6.6.6.6, 203.0.113.9"], nets) == "203.0.113.9"
    # a chain of trusted proxies is skipped; the spoofed leftmost hop is not reached
    assert client_address("127.0.0.1", ["6.6.6.6, 203.0.113.9, 10.1.2.3"], nets) == "203.0.113.9"
    assert client_address("198.51.100.1", ["203.0.113.9"], nets) == "198.51.100.1"
    assert client_address("::1", ["2001:db8::7"], nets) == "2001:db8::7"
    assert client_address("127.0.0.1", [], nets) == "127.0.0.1"
    assert client_address("127.0.0.1", ["10.0.0.5"], nets) == "10.0.0.5"  # all trusted
    assert client_address("127.0.0.1", ["not-an-ip, 10.0.0.5"], nets) == "10.0.0.5"
    assert client_address("127.0.0.1", ["[2001:db8::8]:443"], nets) == "2001:db8::8"
    assert client_address(None, ["203.0.113.9"], nets) is None


def test_a_bad_trusted_proxy_is_a_clear_config_error() -> None:
    with pytest.raises(ConfigError, match="'nginx' is not an IP address or network"):
        load_settings(orchestrator={"trusted_proxies": ["nginx"]})


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    if slapd_binary() is None:
        pytest.skip("slapd is not installed")
    with run_slapd(tmp_path_factory.mktemp("slapd")) as server:
        yield server


def _settings(tmp_path: Path, slapd: Slapd, trusted: list[str]) -> Settings:
    return load_settings(
        orchestrator={
            "database": tmp_path / "proxy.sqlite3",
            "trusted_proxies": trusted,
            "login": LOGIN,
        },  # fmt: skip
        ldap=slapd.settings().model_dump(mode="json"),
        jitsi={"domain": "meet.example.org", "app_secret": JITSI_SECRET},
    )


async def _fail_login(client: Any, user: str, forwarded_for: str) -> int:
    headers = {"X-Forwarded-For": forwarded_for}
    csrf = await token(client, "/login")
    response = await client.post(
        "/login/ldap",
        data={"username": user, "password": "wrong", "csrf_token": csrf, "next": "/"},
        headers=headers,
        allow_redirects=False,
    )
    return int(response.status)


async def _exhaust(client: Any, forwarded_for: str) -> None:
    """PER_ADDRESS wrong passwords spread over accounts (below the per-account limit)."""
    for i in range(PER_ADDRESS):
        status = await _fail_login(client, f"nobody{i % 5}-{forwarded_for}", forwarded_for)
        assert status == 401, status


async def test_clients_behind_a_trusted_proxy_are_limited_separately(
    aiohttp_client: Any, slapd: Slapd, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(_settings(tmp_path, slapd, ["127.0.0.0/8"]))
    server = TestServer(app)
    await server.start_server(access_log_class=ClientAccessLogger)  # as plenary serve does
    client = await aiohttp_client(server)
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    # what nginx sends: the client's own (forged) header, then the address nginx saw
    await _exhaust(client, "192.0.2.66, 203.0.113.1")
    assert await _fail_login(client, "fresh-user", "203.0.113.1") == 429
    assert await _fail_login(client, "fresh-user", "203.0.113.2") == 401
    # the forged leftmost hop was not taken for the client
    assert await _fail_login(client, "fresh-user-2", "192.0.2.66") == 401
    access = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert any(line.startswith("203.0.113.1 ") for line in access), access[:3]
    posts = [line for line in access if '"POST /login/ldap' in line]
    assert posts and not any(line.startswith("127.0.0.1 ") for line in posts), posts[:3]


async def test_an_untrusted_peer_cannot_choose_its_address(
    aiohttp_client: Any, slapd: Slapd, tmp_path: Path
) -> None:
    client = await aiohttp_client(create_app(_settings(tmp_path, slapd, ["10.9.9.9"])))
    await _exhaust(client, "203.0.113.1")
    # a new X-Forwarded-For does not help: the peer 127.0.0.1 is not a trusted proxy
    assert await _fail_login(client, "fresh-user", "203.0.113.2") == 429
