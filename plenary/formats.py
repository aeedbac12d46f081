"""Transcript writers: final caption events → txt, WebVTT, SRT or JSON lines. No I/O.

    write(events, "vtt")
    # 'WEBVTT\\nLanguage: ko\\n\\n00:00:00.480 --> 00:00:02.130\\n<v pfa00001>안녕하세요\\n'

Times are the events' own seconds. A cue never has zero length (one that would is
given the time its text takes to read), and cue text never spans lines (a blank line
would end a cue early). WebVTT names the document's language in a ``Language:`` header
(the most common of the events') and wraps a cue in another language in ``<lang …>``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence

from plenary.events import CaptionEvent

FORMATS = ("txt", "vtt", "srt", "jsonl")
READ_CHARS_PER_SECOND = 15  # a comfortable subtitle reading speed
MIN_CUE_MS = 1000
_LANG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{1,8})*$")


def reading_ms(text: str) -> int:
    """How long a cue of ``text`` should at least stay up: 15 characters a second,
    at least one second."""
    return max(MIN_CUE_MS, round(len(_one_line(text)) * 1000 / READ_CHARS_PER_SECOND))


def language_of(events: Sequence[CaptionEvent]) -> str:
    """The most common valid language tag of ``events`` (the first on a tie), or ""."""
    counts = Counter(e.language for e in events if _LANG.fullmatch(e.language))
    return counts.most_common(1)[0][0] if counts else ""


def write(events: Sequence[CaptionEvent], fmt: str) -> str:
    """The whole document for ``events`` in format ``fmt`` (one of FORMATS)."""
    writers: dict[str, Callable[[Sequence[CaptionEvent]], str]] = {
        "txt": to_txt,
        "vtt": to_vtt,
        "srt": to_srt,
        "jsonl": to_jsonl,
    }
    try:
        writer = writers[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}") from None
    return writer(events)


def to_txt(events: Sequence[CaptionEvent]) -> str:
    """``[HH:MM:SS] <speaker> text`` per caption; no ``<speaker>`` when no caption has one."""
    named = any(e.speaker for e in events)
    lines = []
    for e in events:
        who = f"<{e.speaker}> " if named else ""
        seconds = _clock(_span(e)[0]).split(".")[0]
        lines.append(f"[{seconds}] {who}{_one_line(e.text)}")
    return "".join(line + "\n" for line in lines)


def to_vtt(events: Sequence[CaptionEvent], language: str = "") -> str:
    """A WebVTT document; the speaker is a voice tag, text is escaped for cue text.

    ``Language:`` names ``language`` (default: the events' most common); a cue in
    another language is wrapped in ``<lang xx>``.
    """
    language = language if _LANG.fullmatch(language) else language_of(events)
    cues = [f"WEBVTT\nLanguage: {language}\n" if language else "WEBVTT\n"]
    for e in events:
        start, end = _span(e)
        voice = f"<v {_escape(_one_line(e.speaker))}>" if e.speaker.strip() else ""
        text = _escape(_one_line(e.text))
        if e.language != language and _LANG.fullmatch(e.language):
            text = f"<lang {e.language}>{text}</lang>"
        cues.append(f"{_clock(start)} --> {_clock(end)}\n{voice}{text}\n")
    return "\n".join(cues)


def to_srt(events: Sequence[CaptionEvent]) -> str:
    """Numbered SubRip cues, ``speaker: text``.

    SRT has no escaping of its own, but players render it as HTML-like markup
    (``<i>``, ``<font>``), so ``&``, ``<`` and ``>`` are escaped as in WebVTT.
    """
    cues = []
    for n, e in enumerate(events, 1):
        start, end = _span(e)
        who = f"{_one_line(e.speaker)}: " if e.speaker.strip() else ""
        text = _escape(who + _one_line(e.text))
        cues.append(f"{n}\n{_clock(start, ',')} --> {_clock(end, ',')}\n{text}\n")
    return "\n".join(cues)


def to_jsonl(events: Sequence[CaptionEvent]) -> str:
    """One ``CaptionEvent.to_json()`` object per line, UTF-8 text kept as is."""
    return "".join(json.dumps(e.to_json(), ensure_ascii=False) + "\n" for e in events)


def _span(event: CaptionEvent) -> tuple[int, int]:
    """Start and end in whole milliseconds, never negative; a cue that would end at or
    before its start lasts as long as its text takes to read."""
    start = max(0, round(event.start * 1000))
    end = round(event.end * 1000)
    return start, end if end > start else start + reading_ms(event.text)


def _clock(ms: int, sep: str = ".") -> str:
    """Milliseconds → ``HH:MM:SS.mmm`` (hours grow past two digits if they must)."""
    seconds, millis = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{sep}{millis:03d}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
