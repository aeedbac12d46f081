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


def policy_json(policy: Policy) -> dict[str, Any]:
    dumped: dict[str, Any] = policy.model_dump(mode="json", by_alias=True)
    return dumped


def parse(value: dict[str, Any]) -> Policy:
    return Policy.model_validate(value)
