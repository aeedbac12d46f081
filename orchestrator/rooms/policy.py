"""A room's access policy as stored JSON, checked by the access library's own parser."""

from __future__ import annotations

import json
from typing import Any


def check_policy(value: dict[str, Any]) -> dict[str, Any]:
    """``value`` if the access library accepts it as a Policy; ValueError otherwise."""
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the policy is not JSON: {exc}") from exc
    return value
