"""The iCal feed of upcoming sessions (RFC 5545, written with the icalendar library).

Each session of a weekly series is its own event, so an attendee's calendar shows
exactly the sessions Plenary will open, in the zone they asked for (``?tz=``) with
its VTIMEZONE included. The caller passes only the sessions of rooms the requester may
see (orchestrator/rooms/visibility.py): a calendar app fetches the feed without a
login, so it gets the public rooms.
"""

from __future__ import annotations

from datetime import UTC, datetime

from icalendar import Calendar, Event

from orchestrator.rooms.schedule import Upcoming


def calendar(sessions: list[Upcoming], *, base_url: str, host: str, name: str) -> bytes:
    cal = Calendar()
    cal.add("prodid", "-//Plenary//rooms//EN")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("x-wr-calname", name)
    stamp = datetime.now(UTC).replace(microsecond=0)
    for s in sessions:
        room = s.room
        url = f"{base_url}/r/{room.slug}"
        event = Event()
        start_utc = s.start.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        event.add("uid", f"{room.slug}-{start_utc}@{host}")
        event.add("dtstamp", stamp)
        event.add("dtstart", s.start)
        event.add("dtend", s.end)
        event.add("summary", room.title)
        lines = [room.description] if room.description else []
        lines.append(f"Captions: {', '.join(room.languages)}")
        if room.irc_channel:
            lines.append(f"IRC: {room.irc_channel}")
        lines.append(f"Join: {url}")
        event.add("description", "\n".join(lines))
        event.add("location", url)
        event.add("url", url)
        cal.add_component(event)
    cal.add_missing_timezones()
    data: bytes = cal.to_ical()
    return data
