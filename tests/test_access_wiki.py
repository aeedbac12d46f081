"""MediaWiki OAuth 2.0 login, groups and event participants against tests/fake_mediawiki.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from orchestrator.access.errors import IdentitySourceUnavailable, OAuthError, UnknownEvent
from orchestrator.access.wiki import (
    MediaWiki,
    code_challenge,
    new_code_verifier,
    new_state,
    normalize_username,
    states_match,
)
from plenary.settings import WikiSettings
from tests.fake_mediawiki import CLIENT_ID, CLIENT_SECRET, FakeWiki

REDIRECT = "https://plenary.example.org/login/wiki/callback"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> FakeWiki:
    wiki = FakeWiki()
    wiki.add_user("Alice", groups=["sysop"], global_groups=["steward"], email="a@example.org")
    wiki.add_user("Bob Smith")
    wiki.add_user("Vandal", groups=["sysop"], blocked=True)
    wiki.add_user("Hidden", hidden=True)
    names = [f"Participant {i}" for i in range(44)] + ["Bob Smith"]
    wiki.add_event(123, names, private=("Alice",))
    return wiki


@pytest.fixture
async def server(fake: FakeWiki, aiohttp_server: Any) -> TestServer:
    server: TestServer = await aiohttp_server(fake.app())
    return server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def settings_for(server: TestServer, **overrides: Any) -> WikiSettings:
    values: dict[str, Any] = {
        "enabled": True,
        "url": str(server.make_url("")).rstrip("/"),
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "timeout": 3.0,
    }
    values.update(overrides)
    return WikiSettings(**values)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def wiki(server: TestServer, session: aiohttp.ClientSession, clock: Clock) -> MediaWiki:
    return MediaWiki(settings_for(server), session, clock=clock)


async def login(
    wiki: MediaWiki, session: aiohttp.ClientSession, fake: FakeWiki, who: str
) -> tuple[str, str, str]:
    """Follow authorize as ``who``: (code, state sent back, verifier)."""
    fake.login_as = who
    state, verifier = new_state(), new_code_verifier()
    async with session.get(
        wiki.authorize_url(state, verifier, REDIRECT), allow_redirects=False
    ) as response:
        assert response.status == 302, await response.text()
        location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    query = parse_qs(location.query)
    assert states_match(state, query["state"][0])
    return query["code"][0], query["state"][0], verifier


def test_authorize_url_has_pkce_s256(wiki: MediaWiki) -> None:
    state, verifier = new_state(), new_code_verifier()
    url = urlsplit(wiki.authorize_url(state, verifier, REDIRECT))
    assert url.path == "/w/rest.php/oauth2/authorize"
    q = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert q == {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT,
        "state": state,
        "code_challenge": code_challenge(verifier),
        "code_challenge_method": "S256",
    }
    assert verifier not in url.query  # the verifier never leaves the server


def test_code_challenge_matches_rfc_7636_example() -> None:
    # RFC 7636 appendix B.
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert code_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_state_and_verifier_are_random_and_long() -> None:
    states = {new_state() for _ in range(50)}
    assert len(states) == 50 and all(len(s) >= 43 for s in states)
    verifier = new_code_verifier()
    assert 43 <= len(verifier) <= 128
    assert set(verifier) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
    )


def test_state_mismatch_is_rejected() -> None:
    state = new_state()
    assert states_match(state, state)
    assert not states_match(state, new_state())
    assert not states_match(state, "")
    assert not states_match(None, state)
    assert not states_match("", "")


async def test_login_gives_profile_identity(
    wiki: MediaWiki, session: aiohttp.ClientSession, fake: FakeWiki
) -> None:
    code, _, verifier = await login(wiki, session, fake, "Alice")
    who = await wiki.identity(code, verifier, REDIRECT)
    assert who.source == "wiki"
    assert who.user_id == str(fake.users["Alice"].sub)
    assert who.username == "Alice"
    assert who.email == "a@example.org"
    assert who.groups == {"*", "user", "sysop"}
    assert who.blocked is False
    # The token was used once, server-side, and is nowhere in the identity.
    token = next(iter(fake.tokens))
    assert token not in repr(who)


async def test_blocked_and_hidden_users_come_back_blocked(
    wiki: MediaWiki, session: aiohttp.ClientSession, fake: FakeWiki
) -> None:
    code, _, verifier = await login(wiki, session, fake, "Vandal")
    vandal = await wiki.identity(code, verifier, REDIRECT)
    assert vandal.blocked and vandal.username == "Vandal"
    code, _, verifier = await login(wiki, session, fake, "Hidden")
    hidden = await wiki.identity(code, verifier, REDIRECT)
    assert hidden.blocked and hidden.username == "" and hidden.groups == frozenset()


async def test_pkce_verifier_mismatch_is_rejected(
    wiki: MediaWiki, session: aiohttp.ClientSession, fake: FakeWiki
) -> None:
    code, _, _ = await login(wiki, session, fake, "Alice")
    with pytest.raises(OAuthError, match="invalid_grant"):
        await wiki.identity(code, new_code_verifier(), REDIRECT)
    assert fake.tokens == {}


async def test_wrong_code_reused_code_and_other_redirect_are_rejected(
    wiki: MediaWiki, session: aiohttp.ClientSession, fake: FakeWiki
) -> None:
    code, _, verifier = await login(wiki, session, fake, "Alice")
    with pytest.raises(OAuthError):
        await wiki.identity("not-a-code", verifier, REDIRECT)
    with pytest.raises(OAuthError):
        await wiki.identity("", verifier, REDIRECT)
    code2, _, verifier2 = await login(wiki, session, fake, "Alice")
    with pytest.raises(OAuthError):
        await wiki.identity(code2, verifier2, "https://evil.example/callback")
    assert (await wiki.identity(code, verifier, REDIRECT)).username == "Alice"
    with pytest.raises(OAuthError):  # a code is good once
        await wiki.identity(code, verifier, REDIRECT)


async def test_wrong_client_secret_is_rejected(
    server: TestServer, session: aiohttp.ClientSession, fake: FakeWiki
) -> None:
    good = MediaWiki(settings_for(server), session)
    bad = MediaWiki(settings_for(server, client_secret="wrong"), session)
    code, _, verifier = await login(good, session, fake, "Alice")
    with pytest.raises(OAuthError, match="invalid_client"):
        await bad.identity(code, verifier, REDIRECT)


async def test_global_groups(wiki: MediaWiki) -> None:
    assert await wiki.global_groups("Alice") == {"steward"}
    assert await wiki.global_groups("alice") == {"steward"}  # first letter is case-free
    assert await wiki.global_groups("Bob_Smith") == frozenset()
    assert await wiki.global_groups("Nobody") == frozenset()


async def test_event_participants_follow_every_page(wiki: MediaWiki, fake: FakeWiki) -> None:
    names = await wiki.event_participants(123)
    assert len(names) == 45
    assert "Participant 0" in names and "Participant 43" in names and "Bob Smith" in names
    assert "Alice" not in names  # registered privately: the API does not list her
    pages = [r for r in fake.requests if "/participants" in r]
    assert len(pages) == 3
    assert "last_participant_id" not in pages[0]
    assert all("include_private=false" in p for p in pages)
    # page 1 ended with participant 20 (id 500 + 3*19), page 2 with participant 40
    assert "last_participant_id=557" in pages[1] and "last_participant_id=617" in pages[2]


async def test_event_participants_are_cached_briefly(
    wiki: MediaWiki, fake: FakeWiki, clock: Clock
) -> None:
    await wiki.event_participants(123)
    fake.add_event(123, ["Newcomer"])
    assert "Newcomer" not in await wiki.event_participants(123)
    assert len([r for r in fake.requests if "/participants" in r]) == 3
    clock.now += 61
    assert await wiki.event_participants(123) == {"Newcomer"}


async def test_unknown_event(wiki: MediaWiki) -> None:
    with pytest.raises(UnknownEvent, match="wiki event 9 does not exist"):
        await wiki.event_participants(9)
    with pytest.raises(UnknownEvent):
        await wiki.event(9)
    assert (await wiki.event(123))["name"] == "Event 123"


async def test_wiki_down_fails_closed(
    wiki: MediaWiki, session: aiohttp.ClientSession, fake: FakeWiki
) -> None:
    code, _, verifier = await login(wiki, session, fake, "Alice")
    fake.down = True
    url = wiki.settings.url
    for call in (
        lambda: wiki.identity(code, verifier, REDIRECT),
        lambda: wiki.global_groups("Alice"),
        lambda: wiki.event_participants(123),
        lambda: wiki.event(123),
    ):
        with pytest.raises(IdentitySourceUnavailable, match=rf"the wiki \({url}\) is unavailable"):
            await call()


async def test_wiki_unreachable_fails_closed(session: aiohttp.ClientSession) -> None:
    from bench.harness.netutil import free_port

    wiki = MediaWiki(WikiSettings(url=f"http://127.0.0.1:{free_port()}", timeout=2.0), session)
    with pytest.raises(IdentitySourceUnavailable, match="ClientConnectorError"):
        await wiki.event_participants(1)
    with pytest.raises(IdentitySourceUnavailable):
        await wiki.identity("code", "verifier", REDIRECT)


def test_normalize_username() -> None:
    assert normalize_username("bob_smith") == "Bob smith"
    assert normalize_username("  Bob   Smith ") == "Bob Smith"
    assert normalize_username("홍길동") == "홍길동"


async def test_malformed_or_stuck_participant_pages_fail_closed(
    wiki: MediaWiki, fake: FakeWiki
) -> None:
    fake.ignore_cursor = True  # pages served verbatim
    fake.participants[123] = [{"user_name": "No Id"}] * 20
    with pytest.raises(IdentitySourceUnavailable, match="malformed"):
        await wiki.event_participants(123)
    # A wiki that ignores the cursor and repeats a full page must not loop forever.
    fake.add_event(5, [f"U{i}" for i in range(30)])
    with pytest.raises(IdentitySourceUnavailable, match="do not advance"):
        await wiki.event_participants(5)
    assert len([r for r in fake.requests if "/5/participants" in r]) == 2
