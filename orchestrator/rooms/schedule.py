"""Upcoming sessions across rooms, filtered by language and shown in a chosen zone."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from orchestrator.rooms.model import Room

HORIZON_DAYS = 90
LIMIT = 500


@dataclass(frozen=True)
class Upcoming:
    room: Room
    start: datetime  # aware, in the zone asked for
    end: datetime


def upcoming(
    rooms: Iterable[Room],
    now: datetime,
    *,
    lang: str | None = None,
    tz: ZoneInfo | None = None,
    days: int = HORIZON_DAYS,
) -> list[Upcoming]:
    """Sessions that have not ended by ``now``, soonest first: each room's next one, and
    the further sessions of a weekly series within ``days`` of now (or of the
    series' first session, if that is later).

    ``lang`` keeps rooms captioned in that language (``ko`` also matches ``ko-KR``);
    ``tz`` converts the times (default: each room's own zone).
    """
    horizon = now + timedelta(days=days)
    found: list[Upcoming] = []
    for room in rooms:
        if lang and not any(code == lang or code.startswith(lang + "-") for code in room.languages):
            continue
        limit = horizon
        for index, occ in enumerate(room.schedule.occurrences(now)):
            if index == 0:  # a series that starts later is shown from its first session
                limit = max(horizon, occ.start + timedelta(days=days))
            elif occ.start > limit:
                break
            start, end = (occ.start, occ.end) if tz is None else (
                occ.start.astimezone(tz), occ.end.astimezone(tz))  # fmt: skip
            found.append(Upcoming(room, start, end))
    found.sort(key=lambda u: (u.start, u.room.slug))
    return found[:LIMIT]
