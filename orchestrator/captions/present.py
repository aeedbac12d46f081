"""How a room's captions are shown to people: its title, time zone and language.

Pages, the text stream and the exports ask a ``RoomView`` rather than the server's
clock or locale, so an attendee in Seoul and one in Berlin read the same times, named:

    view = await room_view(captions, "keynote")
    view.title                # 'Opening keynote'
    view.clock(at_ms)         # '10:04:05'
    view.iso(at_ms)           # '2026-11-28T10:04:05+09:00'
    view.zone_label()         # 'KST (Asia/Seoul)'
    view.line_lang("en")      # 'en' (differs from the page's 'ko'); None when the same

Cues: a caption whose producer sent no duration (Jigasi posts carry none) is timed
from arrival at export: ``timed_events`` (stored rows are never changed).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from orchestrator.captions.model import Caption
from orchestrator.captions.service import Captions, main_room
from orchestrator.rooms.model import LANG_RE
from orchestrator.rooms.repository import RoomNotFound, RoomRepository
from plenary import formats
from plenary.events import CaptionEvent

CHROME_LANG = "en"  # the language of Plenary's own words (headings, buttons, notices)
MAX_UNTIMED_CUE_MS = 7000  # an untimed caption is shown until the next one, at most this


def valid_lang(tag: str) -> str | None:
    """``tag`` when it is a language tag HTML and WebVTT can carry, else None."""
    tag = tag.strip()
    return tag if LANG_RE.fullmatch(tag) else None


def main_language(languages: Iterable[str], default: str = CHROME_LANG) -> str:
    """The most frequent valid tag (the first seen on a tie), else ``default``."""
    counts = Counter(t for t in (valid_lang(lang) for lang in languages) if t)
    return counts.most_common(1)[0][0] if counts else default


@dataclass(frozen=True)
class RoomView:
    key: str  # the caption key: a room's slug, or ``slug.breakout-…``
    title: str
    tz: ZoneInfo
    lang: str  # the room's main caption language, the captions page's ``<html lang>``

    def local(self, ms: int) -> dt.datetime:
        return dt.datetime.fromtimestamp(ms / 1000, self.tz)

    def clock(self, ms: int) -> str:
        return self.local(ms).strftime("%H:%M:%S")

    def iso(self, ms: int) -> str:
        """ISO 8601 with the offset, to the second: ``2026-11-28T10:04:05+09:00``."""
        return self.local(ms).isoformat(timespec="seconds")

    def zone_label(self, ms: int | None = None) -> str:
        """``KST (Asia/Seoul)``; ``UTC+05:00 (Asia/Almaty)`` where the zone has no
        lettered abbreviation; ``UTC`` for UTC. At ``ms`` (daylight saving), else now."""
        when = self.local(ms) if ms is not None else dt.datetime.now(self.tz)
        name = self.tz.key
        if name in ("UTC", "Etc/UTC"):
            return "UTC"
        abbr = when.tzname() or ""
        if not abbr.isalpha():
            offset = when.strftime("%z")
            abbr = f"UTC{offset[:3]}:{offset[3:]}"
        return f"{abbr} ({name})"

    def when(self, ms: int | None) -> str:
        """A session's start or end for people: ``2026-11-28 10:04 KST (Asia/Seoul)``."""
        if ms is None:
            return "ongoing"
        return f"{self.local(ms).strftime('%Y-%m-%d %H:%M')} {self.zone_label(ms)}"

    def line_lang(self, language: str, page: str | None = None) -> str | None:
        """The ``lang`` a line needs: its language when valid and not the page's."""
        tag = valid_lang(language)
        return tag if tag and tag != (page or self.lang) else None

    def text_line(self, caption: Caption) -> bytes:
        """One line of ``captions.txt``: ``[2026-11-28T10:04:05+09:00] <Kim> text``."""
        text = " ".join(caption.text.split())
        who = " ".join(caption.speaker.split())
        return f"[{self.iso(caption.at_ms)}] <{who}> {text}\n".encode()


async def room_view(captions: Captions, key: str) -> RoomView:
    """The view of caption key ``key``; a key Plenary has no room for (kept only with
    captions.accept_unknown_rooms) is shown under its name, in UTC."""
    try:
        room = await RoomRepository(captions.store.db).get(main_room(key))
    except RoomNotFound:
        return RoomView(key, key, ZoneInfo("UTC"), CHROME_LANG)
    title = room.title
    if key != main_room(key):  # a breakout room: the main room's title and its own name
        title = f"{room.title} ({key.split('.', 1)[1]})"
    lang = valid_lang(room.languages[0]) or CHROME_LANG
    return RoomView(key, title, ZoneInfo(room.schedule.timezone), lang)


def timed_events(captions: Sequence[Caption], session_start_ms: int) -> list[CaptionEvent]:
    """The captions on the session's clock, for WebVTT/SRT/TXT: every cue has a length.

    A caption with its speech's duration ends when it arrived and lasts that long. One
    without (Jigasi sends none, nor may other producers) starts when it arrived and is
    shown until the next caption of the session arrived, at most 7 s, and at least as
    long as its text takes to read (formats.reading_ms).
    """
    events = []
    for n, caption in enumerate(captions):
        event = caption.as_event(session_start_ms)
        if caption.duration_ms <= 0:
            start = max(0, caption.at_ms - session_start_ms)
            following = captions[n + 1].at_ms - caption.at_ms if n + 1 < len(captions) else 0
            shown = min(following, MAX_UNTIMED_CUE_MS) if following > 0 else MAX_UNTIMED_CUE_MS
            length = max(shown, formats.reading_ms(caption.text))
            event = dataclasses.replace(event, start=start / 1000, end=(start + length) / 1000)
        events.append(event)
    return events
