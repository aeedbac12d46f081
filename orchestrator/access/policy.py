"""Room access rules and the decision for one person.

A room's policy is two ordered rule lists, stored as JSON:

    {"access":     [{"kind": "ldap_group", "group": "devs"},
                    {"kind": "wiki_event", "event_id": 123}],
     "moderators": [{"kind": "user", "source": "ldap", "name": "alice"}],
     "captioners": [{"kind": "ldap_group", "group": "cart"}]}

How ``decide`` reads them:

1. A blocked wiki account is denied, whatever the rules say.
2. Moderator rules are tried in order; the first that matches makes the person a
   moderator, and a moderator is always let in.
3. Otherwise access rules are tried in order; the first that matches lets them in.
4. Nothing matched: denied, with every rule's reason ("not a member of LDAP group
   devs; not registered for wiki event 123"). An empty access list admits nobody.

A rule that needs the wiki (global groups, event registrations) while the wiki cannot
answer does not match. If no other rule lets the person in, the denial says the
wiki is unavailable: sources that are down never open the door.

Captioners (``captioners``, same rule kinds, optional) may correct and type the room's
captions (``captioner``); being one does not let a person in by itself.

Each decision is logged and returned with ``outcome`` and ``rule_kind`` so that a
metrics counter can label it without parsing sentences.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator.access.errors import AccessError, IdentitySourceUnavailable
from orchestrator.access.identity import Identity, Source
from orchestrator.access.wiki import MediaWiki, normalize_username

log = logging.getLogger(__name__)


def _name(value: str) -> str:
    if not value.strip() or any(ord(c) < 32 for c in value):
        raise ValueError("must be a non-empty name without control characters")
    return value.strip()


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Anyone(_Rule):
    kind: Literal["anyone"] = "anyone"

    def __str__(self) -> str:
        return "anyone"


class User(_Rule):
    kind: Literal["user"] = "user"
    source: Source
    name: str

    _check = field_validator("name")(_name)

    def __str__(self) -> str:
        return f"{self.source} user {self.name}"


class LdapGroup(_Rule):
    kind: Literal["ldap_group"] = "ldap_group"
    group: str

    _check = field_validator("group")(_name)

    def __str__(self) -> str:
        return f"LDAP group {self.group}"


class WikiGroup(_Rule):
    kind: Literal["wiki_group"] = "wiki_group"
    group: str
    global_: bool = Field(False, alias="global")

    _check = field_validator("group")(_name)

    def __str__(self) -> str:
        return f"{'global ' if self.global_ else ''}wiki group {self.group}"


class WikiEvent(_Rule):
    kind: Literal["wiki_event"] = "wiki_event"
    event_id: int = Field(gt=0)

    def __str__(self) -> str:
        return f"wiki event {self.event_id}"


Rule = Annotated[Anyone | User | LdapGroup | WikiGroup | WikiEvent, Field(discriminator="kind")]


class AccessPolicy(BaseModel):
    """Who may enter a room (``access``), who moderates it (``moderators``) and who
    corrects and types its captions (``captioners``)."""

    model_config = ConfigDict(extra="forbid")

    access: list[Rule] = Field(default_factory=list)
    moderators: list[Rule] = Field(default_factory=list)
    captioners: list[Rule] = Field(default_factory=list)


Outcome = Literal["allowed", "denied", "blocked", "unavailable"]


@dataclass(frozen=True)
class Decision:
    allowed: bool
    moderator: bool
    rule: str | None  # the rule that let them in, as text ("LDAP group devs")
    reason: str  # a sentence for the person and the log
    outcome: Outcome = "denied"  # for metrics labels
    rule_kind: str | None = None  # "ldap_group", … of the matching rule


@dataclass(frozen=True)
class _Match:
    matched: bool
    reason: str
    unavailable: str | None = None  # why a source could not be asked


async def _check(rule: Rule, who: Identity, wiki: MediaWiki | None) -> _Match:
    if isinstance(rule, Anyone):
        return _Match(True, "anyone may enter")
    if isinstance(rule, User):
        if who.source != rule.source:
            return _Match(False, f"not the {rule.source} user {rule.name}")
        if who.source == "wiki":
            same = normalize_username(who.username) == normalize_username(rule.name)
        else:
            same = who.username.casefold() == rule.name.casefold()
        return _Match(same, f"is the {rule}" if same else f"not the {rule}")
    if isinstance(rule, LdapGroup):
        if who.source != "ldap":
            return _Match(False, f"not a member of LDAP group {rule.group} (not an LDAP login)")
        ok = rule.group.casefold() in {g.casefold() for g in who.groups}
        return _Match(ok, f"{'a' if ok else 'not a'} member of LDAP group {rule.group}")
    if who.source != "wiki":
        return _Match(False, f"not in {rule} (not a wiki login)")
    if isinstance(rule, WikiGroup):
        if not rule.global_:
            ok = rule.group in who.groups
            return _Match(ok, f"{'a' if ok else 'not a'} member of wiki group {rule.group}")
        if wiki is None:
            return _Match(False, f"cannot check {rule}", "the wiki is not configured")
        try:
            groups = await wiki.global_groups(who.username)
        except IdentitySourceUnavailable as exc:
            return _Match(False, f"cannot check {rule}", str(exc))
        ok = rule.group in groups
        return _Match(ok, f"{'a' if ok else 'not a'} member of global wiki group {rule.group}")
    # WikiEvent
    if wiki is None:
        return _Match(False, f"cannot check {rule}", "the wiki is not configured")
    try:
        participants = await wiki.event_participants(rule.event_id)
    except IdentitySourceUnavailable as exc:
        return _Match(False, f"cannot check {rule}", str(exc))
    except AccessError as exc:  # UnknownEvent and other refusals
        return _Match(False, str(exc))
    ok = normalize_username(who.username) in participants
    return _Match(
        ok,
        f"registered for wiki event {rule.event_id}"
        if ok
        else f"not registered (publicly) for wiki event {rule.event_id}",
    )


async def _first(
    rules: list[Rule], who: Identity, wiki: MediaWiki | None
) -> tuple[Rule | None, list[str], list[str]]:
    reasons: list[str] = []
    unavailable: list[str] = []
    for rule in rules:
        m = await _check(rule, who, wiki)
        if m.matched:
            return rule, [m.reason], unavailable
        reasons.append(m.reason)
        if m.unavailable and m.unavailable not in unavailable:
            unavailable.append(m.unavailable)
    return None, reasons, unavailable


def _who(identity: Identity) -> str:
    return f"{identity.source}:{identity.username or identity.user_id}"


async def decide(
    policy: AccessPolicy, identity: Identity, wiki: MediaWiki | None, *, room: str | None = None
) -> Decision:
    """May ``identity`` enter, and as a moderator? See the module docstring for the order."""
    decision = await _decide(policy, identity, wiki)
    log.info(
        "access %s: %s to room %s as %s: %s",
        decision.outcome,
        _who(identity),
        room or "?",
        "moderator" if decision.moderator else "member",
        decision.reason,
    )
    return decision


async def _decide(policy: AccessPolicy, identity: Identity, wiki: MediaWiki | None) -> Decision:
    if identity.blocked:
        return Decision(False, False, None, "the wiki account is blocked", "blocked")
    rule, reasons, down = await _first(policy.moderators, identity, wiki)
    if rule is not None:
        return Decision(True, True, str(rule), f"moderator: {reasons[0]}", "allowed", rule.kind)
    rule, more, down_too = await _first(policy.access, identity, wiki)
    if rule is not None:
        return Decision(True, False, str(rule), more[0], "allowed", rule.kind)
    if not policy.access:
        more = ["this room admits nobody yet (its access list is empty)"]
    down += [d for d in down_too if d not in down]
    if down:
        return Decision(False, False, None, "; ".join(down), "unavailable")
    return Decision(False, False, None, "; ".join(more), "denied")


async def captioner(
    policy: AccessPolicy, identity: Identity, wiki: MediaWiki | None, *, room: str | None = None
) -> Decision:
    """May ``identity`` correct and type the room's captions (a captioner rule matches)?"""
    if identity.blocked:
        decision = Decision(False, False, None, "the wiki account is blocked", "blocked")
    else:
        rule, reasons, down = await _first(policy.captioners, identity, wiki)
        if rule is not None:
            decision = Decision(True, False, str(rule), f"captioner: {reasons[0]}", "allowed",
                                rule.kind)  # fmt: skip
        elif down:
            decision = Decision(False, False, None, "; ".join(down), "unavailable")
        elif not policy.captioners:
            decision = Decision(False, False, None, "this room names no captioners")
        else:
            decision = Decision(False, False, None, "not a captioner: " + "; ".join(reasons))
    log.info("captioner %s: %s in room %s: %s", decision.outcome, _who(identity), room or "?",
             decision.reason)  # fmt: skip
    return decision
