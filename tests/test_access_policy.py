"""Access policy: each rule kind, moderators, order, reasons, fail-closed."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import pydantic
import pytest
from aiohttp.test_utils import TestServer

from orchestrator.access.identity import Identity
from orchestrator.access.policy import AccessPolicy, Decision, decide
from orchestrator.access.wiki import MediaWiki
from plenary.settings import WikiSettings
from tests.fake_mediawiki import CLIENT_ID, CLIENT_SECRET, FakeWiki

ALICE = Identity("ldap", "uid=alice,ou=people", "alice", "Alice", None, frozenset({"devs"}))
CAROL = Identity("ldap", "uid=carol,ou=people", "carol", "Carol", None, frozenset())
WIKI_BOB = Identity("wiki", "1001", "Bob Smith", "Bob Smith", None, frozenset({"user"}))
WIKI_SYSOP = Identity("wiki", "1000", "Alice", "Alice", None, frozenset({"user", "sysop"}))
BLOCKED = Identity("wiki", "1002", "Vandal", "Vandal", None, frozenset({"sysop"}), blocked=True)


def policy(access: list[dict[str, Any]], moderators: Sequence[dict[str, Any]] = ()) -> AccessPolicy:
    return AccessPolicy.model_validate({"access": access, "moderators": list(moderators)})


@pytest.fixture
def fake() -> FakeWiki:
    wiki = FakeWiki()
    wiki.add_user("Alice", groups=["sysop"], global_groups=["steward"])
    wiki.add_user("Bob Smith")
    wiki.add_event(123, [f"Participant {i}" for i in range(44)] + ["Bob Smith"])
    return wiki


@pytest.fixture
async def wiki(fake: FakeWiki, aiohttp_server: Any) -> AsyncIterator[MediaWiki]:
    server: TestServer = await aiohttp_server(fake.app())
    settings = WikiSettings(
        url=str(server.make_url("")).rstrip("/"),
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        timeout=2.0,
    )
    async with aiohttp.ClientSession() as session:
        yield MediaWiki(settings, session)


def test_rules_parse_as_a_discriminated_union() -> None:
    p = policy(
        [
            {"kind": "anyone"},
            {"kind": "user", "source": "ldap", "name": "alice"},
            {"kind": "ldap_group", "group": "devs"},
            {"kind": "wiki_group", "group": "sysop", "global": True},
            {"kind": "wiki_event", "event_id": 123},
        ]
    )
    assert [r.kind for r in p.access] == [
        "anyone",
        "user",
        "ldap_group",
        "wiki_group",
        "wiki_event",
    ]
    assert p.access[3].global_ is True  # type: ignore[union-attr]
    dumped = p.model_dump(by_alias=True)
    assert dumped["access"][3] == {"kind": "wiki_group", "group": "sysop", "global": True}
    assert AccessPolicy.model_validate(dumped) == p


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "everyone"},
        {"kind": "ldap_group"},
        {"kind": "ldap_group", "group": ""},
        {"kind": "ldap_group", "group": "devs", "extra": 1},
        {"kind": "user", "source": "github", "name": "x"},
        {"kind": "wiki_event", "event_id": 0},
        {"kind": "user", "source": "ldap", "name": "a\nb"},
    ],
)
def test_bad_rules_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        policy([bad])


async def test_anyone() -> None:
    d = await decide(policy([{"kind": "anyone"}]), CAROL, None)
    assert d == Decision(True, False, "anyone", "anyone may enter", "allowed", "anyone")


async def test_empty_policy_admits_nobody() -> None:
    d = await decide(policy([]), ALICE, None)
    assert not d.allowed and "admits nobody" in d.reason


async def test_named_users_by_source() -> None:
    p = policy(
        [
            {"kind": "user", "source": "ldap", "name": "Alice"},
            {"kind": "user", "source": "wiki", "name": "bob_Smith"},
        ]
    )
    assert (await decide(p, ALICE, None)).allowed  # LDAP names compare case-free
    assert (await decide(p, WIKI_BOB, None)).allowed  # wiki names as MediaWiki spells them
    d = await decide(p, CAROL, None)
    assert not d.allowed
    assert d.reason == "not the ldap user Alice; not the wiki user bob_Smith"
    # Same name, other source: no match.
    wiki_alice = Identity("wiki", "9", "Alice", "Alice", None, frozenset())
    assert not (
        await decide(
            policy([{"kind": "user", "source": "ldap", "name": "alice"}]), wiki_alice, None
        )
    ).allowed


async def test_ldap_group() -> None:
    p = policy([{"kind": "ldap_group", "group": "devs"}])
    d = await decide(p, ALICE, None)
    assert d.allowed and d.rule == "LDAP group devs" and d.rule_kind == "ldap_group"
    d = await decide(p, CAROL, None)
    assert not d.allowed and d.reason == "not a member of LDAP group devs"
    d = await decide(p, WIKI_SYSOP, None)
    assert not d.allowed and "not an LDAP login" in d.reason


async def test_local_wiki_group_needs_no_wiki_call() -> None:
    p = policy([{"kind": "wiki_group", "group": "sysop"}])
    assert (await decide(p, WIKI_SYSOP, None)).allowed
    d = await decide(p, WIKI_BOB, None)
    assert not d.allowed and d.reason == "not a member of wiki group sysop"
    assert not (await decide(p, ALICE, None)).allowed


async def test_global_wiki_group(wiki: MediaWiki) -> None:
    p = policy([{"kind": "wiki_group", "group": "steward", "global": True}])
    d = await decide(p, WIKI_SYSOP, wiki)
    assert d.allowed and d.rule == "global wiki group steward"
    d = await decide(p, WIKI_BOB, wiki)
    assert not d.allowed and d.reason == "not a member of global wiki group steward"


async def test_wiki_event_participants_across_pages(wiki: MediaWiki) -> None:
    p = policy([{"kind": "wiki_event", "event_id": 123}])
    d = await decide(p, WIKI_BOB, wiki)  # the 45th participant: on page 3
    assert d.allowed and d.rule == "wiki event 123"
    d = await decide(p, WIKI_SYSOP, wiki)
    assert not d.allowed and "not registered (publicly) for wiki event 123" in d.reason
    d = await decide(policy([{"kind": "wiki_event", "event_id": 7}]), WIKI_BOB, wiki)
    assert not d.allowed and d.reason == "wiki event 7 does not exist" and d.outcome == "denied"


async def test_blocked_user_is_always_denied(wiki: MediaWiki) -> None:
    p = policy([{"kind": "anyone"}], [{"kind": "wiki_group", "group": "sysop"}])
    d = await decide(p, BLOCKED, wiki)
    assert d == Decision(False, False, None, "the wiki account is blocked", "blocked")


async def test_moderators_are_separate_and_always_admitted() -> None:
    p = policy(
        [{"kind": "ldap_group", "group": "devs"}],
        [{"kind": "user", "source": "ldap", "name": "carol"}],
    )
    alice = await decide(p, ALICE, None)
    assert alice.allowed and not alice.moderator
    carol = await decide(p, CAROL, None)  # not in devs, but the named moderator
    assert carol.allowed and carol.moderator and carol.rule == "ldap user carol"
    assert carol.reason.startswith("moderator: ")


async def test_first_matching_rule_is_reported() -> None:
    p = policy(
        [
            {"kind": "user", "source": "ldap", "name": "alice"},
            {"kind": "ldap_group", "group": "devs"},
            {"kind": "anyone"},
        ]
    )
    assert (await decide(p, ALICE, None)).rule == "ldap user alice"
    assert (await decide(p, CAROL, None)).rule == "anyone"


async def test_wiki_down_fails_closed_with_the_reason(wiki: MediaWiki, fake: FakeWiki) -> None:
    fake.down = True
    p = policy([{"kind": "wiki_event", "event_id": 123}])
    d = await decide(p, WIKI_BOB, wiki)
    assert not d.allowed and d.outcome == "unavailable"
    assert d.reason.startswith(f"the wiki ({wiki.settings.url}) is unavailable")
    # Another rule that needs no wiki still admits; the outage never does.
    p = policy([{"kind": "wiki_event", "event_id": 123}, {"kind": "wiki_group", "group": "sysop"}])
    assert (await decide(p, WIKI_SYSOP, wiki)).allowed
    # A moderator rule that cannot be checked does not make anyone a moderator.
    p = policy([{"kind": "anyone"}], [{"kind": "wiki_event", "event_id": 123}])
    d = await decide(p, WIKI_BOB, wiki)
    assert d.allowed and not d.moderator


async def test_wiki_rules_without_a_wiki_fail_closed() -> None:
    p = policy([{"kind": "wiki_group", "group": "steward", "global": True}])
    d = await decide(p, WIKI_SYSOP, None)
    assert not d.allowed and d.outcome == "unavailable" and d.reason == "the wiki is not configured"


async def test_every_decision_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="orchestrator.access.policy")
    await decide(policy([{"kind": "ldap_group", "group": "devs"}]), CAROL, None, room="keynote")
    await decide(policy([{"kind": "ldap_group", "group": "devs"}]), ALICE, None, room="keynote")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "access denied: ldap:carol to room keynote as member: not a member of LDAP group devs",
        "access allowed: ldap:alice to room keynote as member: a member of LDAP group devs",
    ]
