"""Jitsi tokens checked claim by claim as prosody's token/util.lib.lua checks them."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest

from orchestrator.access.identity import Identity
from orchestrator.access.jitsi_jwt import (
    LOW_BANDWIDTH,
    TokenError,
    is_valid_room_name,
    join_url,
    mint,
)
from plenary.settings import ConfigError, JitsiSettings, load_settings

SECRET = "prosody-app-secret-0123456789abcdef"
ALICE = Identity(
    "ldap", "uid=alice,ou=people", "alice", "Alice Liddell", "a@example.org", frozenset()
)
BOB = Identity("wiki", "1001", "Bob Smith", "Bob Smith", None, frozenset())


@pytest.fixture
def settings() -> JitsiSettings:
    return JitsiSettings(domain="meet.example.org", app_id="plenary", app_secret=SECRET)


def prosody_verify(token: str, settings: JitsiSettings, room: str) -> dict[str, Any]:
    """The checks of prosody's token verifier (token/util.lib.lua), with PyJWT."""
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "HS256", "typ": "JWT"}  # typ JWT; alg = signature_algorithm
    claims: dict[str, Any] = jwt.decode(
        token,
        SECRET,
        algorithms=["HS256"],
        issuer=["plenary"],  # asap_accepted_issuers defaults to {app_id}
        audience=["jitsi"],  # asap_accepted_audiences
        options={"require": ["iss", "aud", "sub", "room", "exp", "nbf", "iat"]},
    )
    assert claims["sub"] == settings.domain  # verify_room: sub is the domain (or tenant)
    assert claims["room"].lower() == room  # prosody lowercases the room claim
    return claims


def test_member_token_claim_by_claim(settings: JitsiSettings) -> None:
    now = time.time()
    token = mint(settings, room="keynote", identity=BOB, moderator=False, now=now)
    claims = prosody_verify(token, settings, "keynote")
    assert claims["iss"] == "plenary" and claims["aud"] == "jitsi"
    assert claims["iat"] == int(now)
    assert claims["nbf"] == int(now) - 30  # clock skew allowance
    assert claims["exp"] == int(now) + 300  # short-lived
    assert claims["context"]["user"] == {
        "id": "wiki:1001",
        "name": "Bob Smith",
        "moderator": False,
        "affiliation": "member",
    }  # no email when none is known
    assert claims["context"]["features"] == {"transcription": False}


def test_moderator_token(settings: JitsiSettings) -> None:
    token = mint(settings, room="keynote", identity=ALICE, moderator=True, avatar="https://a/x.png")
    user = prosody_verify(token, settings, "keynote")["context"]["user"]
    assert user["moderator"] is True
    assert user["affiliation"] == "owner"  # mod_token_affiliation: owner → moderator
    assert user["email"] == "a@example.org"
    assert user["avatar"] == "https://a/x.png"
    assert user["name"] == "Alice Liddell"
    features = jwt.decode(token, SECRET, algorithms=["HS256"], audience="jitsi")["context"][
        "features"
    ]
    assert features == {"transcription": True}


def test_extra_features_from_settings() -> None:
    s = JitsiSettings(
        app_secret=SECRET,
        moderator_features=["transcription", "recording"],
        member_features=["screen-sharing"],
    )
    mod = jwt.decode(
        mint(s, room="r", identity=ALICE, moderator=True),
        SECRET,
        algorithms=["HS256"],
        audience="jitsi",
    )
    member = jwt.decode(
        mint(s, room="r", identity=BOB, moderator=False),
        SECRET,
        algorithms=["HS256"],
        audience="jitsi",
    )
    assert mod["context"]["features"] == {
        "transcription": True,
        "recording": True,
        "screen-sharing": False,
    }
    assert member["context"]["features"] == {
        "transcription": False,
        "recording": False,
        "screen-sharing": True,
    }


def test_expired_and_not_yet_valid_tokens_are_rejected(settings: JitsiSettings) -> None:
    old = mint(settings, room="keynote", identity=BOB, moderator=False, now=time.time() - 301)
    with pytest.raises(jwt.ExpiredSignatureError):
        prosody_verify(old, settings, "keynote")
    future = mint(settings, room="keynote", identity=BOB, moderator=False, now=time.time() + 120)
    with pytest.raises(jwt.ImmatureSignatureError):
        prosody_verify(future, settings, "keynote")


def test_wrong_secret_issuer_audience_are_rejected(settings: JitsiSettings) -> None:
    token = mint(settings, room="keynote", identity=BOB, moderator=False)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(
            token, "other-secret-0123456789abcdef0123", algorithms=["HS256"], audience="jitsi"
        )
    with pytest.raises(jwt.InvalidAlgorithmError):
        jwt.decode(token, SECRET, algorithms=["HS512"], audience="jitsi")
    other = JitsiSettings(app_secret=SECRET, app_id="someone-else", audience="elsewhere")
    token = mint(other, room="keynote", identity=BOB, moderator=False)
    with pytest.raises(jwt.InvalidIssuerError):
        jwt.decode(token, SECRET, algorithms=["HS256"], issuer=["plenary"], audience="elsewhere")
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(token, SECRET, algorithms=["HS256"], audience=["jitsi"])


def test_subject_setting_names_a_tenant() -> None:
    s = JitsiSettings(app_secret=SECRET, subject="tenant1")
    claims = jwt.decode(
        mint(s, room="r", identity=BOB, moderator=False),
        SECRET,
        algorithms=["HS256"],
        audience="jitsi",
    )
    assert claims["sub"] == "tenant1"


def test_room_must_match(settings: JitsiSettings) -> None:
    token = mint(settings, room="keynote", identity=BOB, moderator=False)
    with pytest.raises(AssertionError):
        prosody_verify(token, settings, "other-room")


def test_no_secret_no_token() -> None:
    with pytest.raises(TokenError, match="jitsi.app_secret is not set"):
        mint(JitsiSettings(), room="keynote", identity=BOB, moderator=False)


@pytest.mark.parametrize(
    "name", ["", "Keynote", "a b", "a/b", "a?b", "a#b", "-x", "x-", "x" * 65, "홍길동", "../x"]
)
def test_invalid_room_names(settings: JitsiSettings, name: str) -> None:
    assert not is_valid_room_name(name)
    with pytest.raises(TokenError, match="not a valid Jitsi room name"):
        mint(settings, room=name, identity=BOB, moderator=False)
    with pytest.raises(TokenError):
        join_url(settings, name, "t", low_bandwidth=False)


@pytest.mark.parametrize("name", ["keynote", "a", "day-2.track_b", "x" * 64, "2026"])
def test_valid_room_names(name: str) -> None:
    assert is_valid_room_name(name)


def test_join_url_round_trips(settings: JitsiSettings) -> None:
    token = mint(settings, room="day-2.keynote", identity=BOB, moderator=False)
    url = urlsplit(join_url(settings, "day-2.keynote", token, low_bandwidth=False))
    assert (url.scheme, url.netloc, url.path, url.fragment) == (
        "https",
        "meet.example.org",
        "/day-2.keynote",
        "",
    )
    assert parse_qs(url.query) == {"jwt": [token]}
    prosody_verify(parse_qs(url.query)["jwt"][0], settings, "day-2.keynote")


def test_low_bandwidth_join_url_has_the_hash_overrides(settings: JitsiSettings) -> None:
    token = mint(settings, room="keynote", identity=BOB, moderator=False)
    url = join_url(settings, "keynote", token, low_bandwidth=True)
    assert url.endswith(
        "#config.startAudioOnly=true&config.channelLastN=1&config.resolution=180"
        "&config.constraints.video.height.ideal=180"
    )
    parts = urlsplit(url)
    assert parse_qs(parts.query) == {"jwt": [token]}
    assert {k: v[0] for k, v in parse_qs(parts.fragment).items()} == LOW_BANDWIDTH


def test_settings_validation() -> None:
    with pytest.raises(ConfigError, match="jitsi.domain"):
        load_settings(jitsi={"domain": "https://meet.example.org/"})
    with pytest.raises(ConfigError, match="jitsi.moderator_features"):
        load_settings(jitsi={"moderator_features": ["Not A Feature"]})
    with pytest.raises(ConfigError, match="jitsi.token_lifetime"):
        load_settings(jitsi={"token_lifetime": 5})
    assert load_settings(jitsi={"domain": "Meet.Example.org:8443"}).jitsi.domain == (
        "meet.example.org:8443"
    )
