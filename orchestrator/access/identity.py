"""Who a logged-in person is, whichever source vouched for them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Source = Literal["ldap", "wiki"]


@dataclass(frozen=True)
class Identity:
    """A person as an identity source described them at login.

    ``groups`` are LDAP group cns, or the wiki's local group names as the wiki spells
    them (``sysop``, ``autoconfirmed``…). A wiki user hidden by oversight comes back
    with an empty ``username`` and ``blocked=True``.
    """

    source: Source
    user_id: str
    username: str
    display_name: str
    email: str | None
    groups: frozenset[str]
    blocked: bool = False
