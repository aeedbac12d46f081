"""A room's access policy: stored as JSON, checked by the access library's own model."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from orchestrator.access.policy import Policy

DEFAULT: dict[str, Any] = {"access": [], "moderators": []}


def check_policy(value: dict[str, Any]) -> dict[str, Any]:
    """``value`` normalized if it is a valid Policy; ValueError naming the problem."""
    try:
        policy = Policy.model_validate(value)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"invalid policy at {where or 'top'}: {first['msg']}") from exc
    return policy_json(policy)


def check_readers(value: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``value`` normalized if it is a valid list of access rules; ValueError otherwise."""
    rules: list[dict[str, Any]] = check_policy({"access": value})["access"]
    return rules


def readers(value: list[dict[str, Any]]) -> Policy:
    """Caption readers as a policy whose access rules are the list (and no moderators)."""
    return Policy.model_validate({"access": value})


def public_captions(policy: dict[str, Any], caption_readers: list[dict[str, Any]]) -> bool:
    """Whether anyone, logged in or not, may read a room's captions: its policy or its
    caption readers hold an ``anyone`` rule."""
    rules = list(policy.get("access", [])) + list(caption_readers)
    return any(isinstance(r, dict) and r.get("kind") == "anyone" for r in rules)


def policy_json(policy: Policy) -> dict[str, Any]:
    dumped: dict[str, Any] = policy.model_dump(mode="json", by_alias=True)
    return dumped


def parse(value: dict[str, Any]) -> Policy:
    return Policy.model_validate(value)
