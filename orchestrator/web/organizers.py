"""Who may create and edit rooms: named users or members of named groups (settings)."""

from __future__ import annotations

from orchestrator.access.identity import Identity
from plenary.settings import OrchestratorSettings


def is_organizer(settings: OrchestratorSettings, who: Identity) -> bool:
    if who.blocked:
        return False
    names = {n.casefold() for n in settings.organizers}
    if who.username.casefold() in names:
        return True
    groups = {g.casefold() for g in who.groups}
    return any(g.casefold() in groups for g in settings.organizer_groups)
