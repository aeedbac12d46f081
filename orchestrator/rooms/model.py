"""What a room is: pydantic models shared by the API, the forms, the CLI and the store.

Times are wall-clock times in the room's own IANA zone, so a weekly session stays at
10:00 in Seoul across daylight-saving changes elsewhere:

    Schedule(start="2026-12-01T10:00", end="2026-12-01T11:00", timezone="Asia/Seoul")
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from orchestrator.access.jitsi_jwt import is_valid_room_name
from orchestrator.rooms.policy import CaptionPolicy, check_policy, check_readers

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
LANG_RE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
# Paths a Jitsi web server serves itself; a room by one of these names would be unreachable.
JITSI_RESERVED = frozenset(
    {
        "about", "colibri-ws", "config", "css", "external_api", "fonts", "http-bind",
        "images", "interface_config", "lang", "libs", "sounds", "static", "xmpp-websocket",
    }
)  # fmt: skip
MAX_SERIES_WEEKS = 520
RoomState = Literal["scheduled", "open", "live", "closed"]


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ValueError for anything else (file paths included)."""
    if name not in _zones():
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as Asia/Seoul)")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


_ZONES: set[str] = set()


def _zones() -> set[str]:
    if not _ZONES:
        _ZONES.update(available_timezones())
        _ZONES.add("UTC")
    return _ZONES


def check_slug(value: str) -> str:
    if not SLUG_RE.fullmatch(value) or not is_valid_room_name(value):
        raise ValueError(
            "a room name is 1-63 lower-case letters, digits, '-' or '_', starting and "
            "ending with a letter or digit"
        )
    if value in JITSI_RESERVED:
        raise ValueError(f"{value!r} is a path Jitsi serves itself; choose another room name")
    return value


def check_channel(value: str) -> str:
    if not value or value[0] not in "#&+!" or any(c in value for c in " ,\x07\r\n\0"):
        raise ValueError("an IRC channel starts with # (or &, +, !) and holds no space or comma")
    if len(value) > 50:
        raise ValueError("an IRC channel name is at most 50 characters")
    return value


class Schedule(BaseModel):
    """One session, or a weekly series of them, in the room's time zone."""

    model_config = ConfigDict(extra="forbid")

    start: datetime = Field(description="Start, wall time in `timezone` (ISO 8601).")
    end: datetime = Field(description="End, wall time in `timezone`; after `start`.")
    timezone: str = Field(description="IANA time zone, e.g. Asia/Seoul.")
    recurrence: Literal["weekly"] | None = Field(
        None, description="`weekly` repeats the session every week; null: once."
    )
    until: date | None = Field(
        None, description="Last day of a weekly series (inclusive); null: no end."
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        zone(value)
        return value

    @model_validator(mode="after")
    def _order(self) -> Schedule:
        tz = zone(self.timezone)
        # A time with an offset is taken as that instant and stored as wall time in the zone.
        if self.start.tzinfo is not None:
            self.start = self.start.astimezone(tz).replace(tzinfo=None)
        if self.end.tzinfo is not None:
            self.end = self.end.astimezone(tz).replace(tzinfo=None)
        if self.end <= self.start:
            raise ValueError("the schedule's end must be after its start")
        if self.recurrence == "weekly" and self.end - self.start >= timedelta(days=7):
            raise ValueError("a weekly session must last less than a week")
        if self.until is not None and self.until < self.start.date():
            raise ValueError("the series' last day (until) is before its first session")
        return self

    def occurrences(self, after: datetime) -> Iterator[Occurrence]:
        """Sessions that end after the aware instant ``after``, in order."""
        tz = zone(self.timezone)
        length = self.end - self.start
        first = 0
        if self.recurrence == "weekly":
            # Skip the weeks already over (a long series need not be walked from its start).
            behind = after.astimezone(tz).replace(tzinfo=None) - self.end
            first = max(0, behind.days // 7 - 1)
        weeks = MAX_SERIES_WEEKS if self.recurrence == "weekly" else 1
        for week in range(first, first + weeks):
            wall = self.start + timedelta(weeks=week)
            if self.until is not None and wall.date() > self.until:
                return
            start = wall.replace(tzinfo=tz)
            end = (wall + length).replace(tzinfo=tz)
            if end > after:
                yield Occurrence(start=start, end=end)


@dataclass(frozen=True)
class Occurrence:
    start: datetime  # aware, in the room's zone
    end: datetime


class RoomFields(BaseModel):
    """Everything about a room except its name; what PUT replaces."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: str = Field(min_length=1, max_length=200, description="Shown on pages and calendars.")
    description: str = Field("", max_length=5000, description="Plain text.")
    languages: list[str] = Field(
        default_factory=lambda: ["ko"],
        min_length=1,
        max_length=10,
        description="Caption languages (BCP 47, e.g. ko, en); the first is the main one.",
    )
    schedule: Schedule
    policy: dict[str, Any] = Field(
        default_factory=lambda: {"access": [], "moderators": []},
        description="Access policy, moderators and captioners (who correct and type the "
        "captions) as orchestrator.access.policy.AccessPolicy JSON; an empty object lets no "
        "one in.",
    )
    caption_readers: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Who else may read the room's captions and transcripts, as access rules "
        '(the `access` rules of a policy); `[{"kind": "anyone"}]` makes them public, even '
        "without logging in. Empty: only those the policy admits.",
    )
    contact: str = Field(
        "", max_length=200, description="Whom a denied attendee should ask (name or address)."
    )
    low_bandwidth: bool = Field(True, description="Offer the audio-only low-bandwidth join.")
    irc_channel: str | None = Field(None, description="IRC channel with the captions.")
    transcript_retention_days: int | None = Field(
        None,
        ge=1,
        le=36500,
        description="Days transcripts are kept; null: captions are not recorded at all.",
    )

    @property
    def caption_policy(self) -> CaptionPolicy:
        """What is kept of the room's captions (``transcript_retention_days`` typed)."""
        return CaptionPolicy.of(self.transcript_retention_days)

    @field_validator("languages")
    @classmethod
    def _languages(cls, value: list[str]) -> list[str]:
        seen: list[str] = []
        for lang in value:
            if not LANG_RE.fullmatch(lang):
                raise ValueError(f"{lang!r} is not a language tag such as ko or en-US")
            if lang not in seen:
                seen.append(lang)
        return seen

    @field_validator("irc_channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        return check_channel(value) if value else None

    @field_validator("policy")
    @classmethod
    def _policy(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_policy(value)

    @field_validator("caption_readers")
    @classmethod
    def _readers(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return check_readers(value)


class RoomCreate(RoomFields):
    slug: str = Field(description="Room name, also the Jitsi room name.")

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str) -> str:
        return check_slug(value)


class RoomPatch(BaseModel):
    """A partial update: only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = None
    description: str | None = None
    languages: list[str] | None = None
    schedule: Schedule | None = None
    policy: dict[str, Any] | None = None
    caption_readers: list[dict[str, Any]] | None = None
    contact: str | None = None
    low_bandwidth: bool | None = None
    irc_channel: str | None = None
    transcript_retention_days: int | None = None


class Room(RoomCreate):
    created_at: datetime
    updated_at: datetime

    def next_occurrence(self, now: datetime) -> Occurrence | None:
        return next(self.schedule.occurrences(now), None)

    def state(self, now: datetime, early_minutes: int) -> RoomState:
        """Where the schedule stands at the aware instant ``now`` (the ``plenary_rooms`` gauge).

        ``live`` during a session, ``open`` in the ``early_minutes`` before one (the join
        page lets people in, as in web.pages.room_facts), ``scheduled`` before that, and
        ``closed`` once no session is left.
        """
        occ = self.next_occurrence(now)
        if occ is None:
            return "closed"
        if occ.start <= now:
            return "live"
        if occ.start - timedelta(minutes=early_minutes) <= now:
            return "open"
        return "scheduled"


class SessionOut(BaseModel):
    """One upcoming session of a room, in the zone asked for."""

    slug: str
    title: str
    languages: list[str]
    start: datetime
    end: datetime
    url: str


class Problem(BaseModel):
    """An error answer (RFC 9457, orchestrator/problems.py): what went wrong, per field
    when validation failed, and whom to ask when a room refuses a reader."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] = Field(default_factory=list)
    ask: list[str] = Field(default_factory=list)
