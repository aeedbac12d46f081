"""Transcript writers, checked as text and parsed back with webvtt-py."""

from __future__ import annotations

import html
import json
from dataclasses import replace
from pathlib import Path

import pytest
import webvtt

from plenary import formats
from plenary.events import CaptionEvent, Word


def ev(text: str, start: float, end: float, speaker: str = "", **kw: object) -> CaptionEvent:
    return CaptionEvent(
        room="r",
        speaker=speaker,
        language="ko",
        text=text,
        is_final=True,
        start=start,
        end=end,
        message_id=f"m{start}",
        **kw,  # type: ignore[arg-type]
    )


EVENTS = [
    ev("안녕하세요 🎉", 0.48, 2.13, "민지"),
    ev("1 < 2 & 3 > 2 <script>alert(1)</script>", 65.0, 66.5, "Bob <admin>"),
    ev("한 시간 뒤", 3723.25, 3724.0, "민지"),
]


def read_srt(text: str, tmp_path: Path) -> webvtt.WebVTT:
    path = tmp_path / "out.srt"
    path.write_text(text, encoding="utf-8")
    return webvtt.from_srt(str(path))


# --- txt ---


def test_txt_one_line_per_caption_with_speaker() -> None:
    assert formats.to_txt(EVENTS).splitlines() == [
        "[00:00:00] <민지> 안녕하세요 🎉",
        "[00:01:05] <Bob <admin>> 1 < 2 & 3 > 2 <script>alert(1)</script>",
        "[01:02:03] <민지> 한 시간 뒤",
    ]


def test_txt_without_speakers_has_no_prefix() -> None:
    assert formats.to_txt([ev("하나", 1.9, 2.5), ev("둘", 61, 62)]) == (
        "[00:00:01] 하나\n[00:01:01] 둘\n"
    )


def test_txt_keeps_a_caption_on_one_line() -> None:
    assert formats.to_txt([ev("첫 줄\n\n둘째 줄", 0, 1)]) == "[00:00:00] 첫 줄 둘째 줄\n"


# --- WebVTT ---


def test_vtt_literal() -> None:
    assert formats.to_vtt(EVENTS[:1]) == (
        "WEBVTT\nLanguage: ko\n\n00:00:00.480 --> 00:00:02.130\n<v 민지>안녕하세요 🎉\n"
    )


def test_vtt_parses_strictly_with_times_voices_and_text() -> None:
    doc = webvtt.from_string(formats.to_vtt(EVENTS), strict=True)
    assert [(c.start, c.end) for c in doc.captions] == [
        ("00:00:00.480", "00:00:02.130"),
        ("00:01:05.000", "00:01:06.500"),
        ("01:02:03.250", "01:02:04.000"),
    ]
    assert [c.voice for c in doc.captions] == ["민지", "Bob &lt;admin&gt;", "민지"]
    assert [html.unescape(c.text) for c in doc.captions] == [e.text for e in EVENTS]


def test_vtt_escapes_markup() -> None:
    text = formats.to_vtt(EVENTS[1:2])
    assert "<script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "1 &lt; 2 &amp; 3 &gt; 2" in text
    # The only tag in the cue is the voice span.
    cue = webvtt.from_string(text)[0]
    assert cue.raw_text.count("<") == 1
    assert cue.raw_text.startswith("<v Bob &lt;admin&gt;>")


def test_vtt_text_cannot_break_the_cue() -> None:
    # "-->" on a line, or a blank line, would end or corrupt a cue.
    text = formats.to_vtt([ev("a\n\n00:00:09.000 --> 00:00:10.000\nb", 0, 1)])
    doc = webvtt.from_string(text, strict=True)
    assert len(doc) == 1
    assert html.unescape(doc[0].text) == "a 00:00:09.000 --> 00:00:10.000 b"


def test_vtt_without_speaker_has_no_voice_tag() -> None:
    cue = webvtt.from_string(formats.to_vtt([ev("말", 1, 2)]))[0]
    assert cue.voice is None
    assert cue.raw_text == "말"


def test_cue_never_has_zero_length() -> None:
    """A cue that would end at or before its start lasts as long as its text takes to
    read: 15 characters a second, at least a second."""
    long = "가" * 45
    events = [ev("거꾸로", 5.0, 4.2, "a"), ev("음수", -0.5, -0.1, "a"), ev(long, 9.0, 9.0)]
    doc = webvtt.from_string(formats.to_vtt(events), strict=True)
    assert [(c.start, c.end) for c in doc.captions] == [
        ("00:00:05.000", "00:00:06.000"),
        ("00:00:00.000", "00:00:01.000"),
        ("00:00:09.000", "00:00:12.000"),
    ]
    assert all(c.end_in_seconds > c.start_in_seconds for c in doc.captions)


def test_vtt_names_its_language_and_marks_cues_in_another() -> None:
    events = [ev("안녕하세요", 0, 1), ev("둘", 1, 2), replace(EVENTS[0], language="en", text="Hi")]
    text = formats.to_vtt(events)
    assert text.startswith("WEBVTT\nLanguage: ko\n\n")
    doc = webvtt.from_string(text, strict=True)
    assert doc[2].raw_text == "<v 민지><lang en>Hi</lang>"
    assert formats.to_vtt(events, "en").startswith("WEBVTT\nLanguage: en\n\n")
    odd = replace(EVENTS[0], language="ko\n\n00:00 --> x")  # not a tag: no header, no span
    assert formats.to_vtt([odd]).startswith("WEBVTT\n\n00:00:00.480")


def test_milliseconds_round_without_carry_errors() -> None:
    text = formats.to_vtt([ev("x", 59.9996, 3599.9999)])
    assert "00:01:00.000 --> 01:00:00.000" in text


# --- SRT ---


def test_srt_literal() -> None:
    assert formats.to_srt([EVENTS[0], ev("둘", 2.5, 3)]) == (
        "1\n00:00:00,480 --> 00:00:02,130\n민지: 안녕하세요 🎉\n"
        "\n"
        "2\n00:00:02,500 --> 00:00:03,000\n둘\n"
    )


def test_srt_parses_with_numbers_times_and_text(tmp_path: Path) -> None:
    doc = read_srt(formats.to_srt(EVENTS), tmp_path)
    assert [(c.start, c.end) for c in doc.captions] == [
        ("00:00:00.480", "00:00:02.130"),
        ("00:01:05.000", "00:01:06.500"),
        ("01:02:03.250", "01:02:04.000"),
    ]
    assert [html.unescape(c.text) for c in doc.captions] == [
        "민지: 안녕하세요 🎉",
        "Bob <admin>: 1 < 2 & 3 > 2 <script>alert(1)</script>",
        "민지: 한 시간 뒤",
    ]
    numbers = [block.split("\n")[0] for block in formats.to_srt(EVENTS).split("\n\n")]
    assert numbers == ["1", "2", "3"]


def test_srt_escapes_markup(tmp_path: Path) -> None:
    text = formats.to_srt(EVENTS[1:2])
    assert "<script>" not in text
    assert "&lt;script&gt;" in text
    assert "&amp;" in text


def test_srt_end_never_before_start(tmp_path: Path) -> None:
    doc = read_srt(formats.to_srt([ev("거꾸로", 5.0, 4.2)]), tmp_path)
    assert (doc[0].start, doc[0].end) == ("00:00:05.000", "00:00:06.000")


# --- jsonl ---


def test_jsonl_one_event_per_line_unescaped_unicode() -> None:
    events = [ev("안녕 🎉", 0.5, 1.0, "민지", words=(Word("안녕", 0.5, 0.8, 0.9),)), EVENTS[1]]
    text = formats.to_jsonl(events)
    lines = text.splitlines()
    assert len(lines) == 2
    assert "안녕 🎉" in lines[0]  # not \uc548...
    assert [json.loads(line) for line in lines] == [e.to_json() for e in events]
    assert json.loads(lines[0])["words"] == [
        {"word": "안녕", "start": 0.5, "end": 0.8, "conf": 0.9}
    ]


# --- dispatch ---


@pytest.mark.parametrize("fmt", formats.FORMATS)
def test_write_dispatches(fmt: str) -> None:
    assert formats.write(EVENTS, fmt) == getattr(formats, f"to_{fmt}")(EVENTS)


def test_write_rejects_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown format 'docx'"):
        formats.write(EVENTS, "docx")


def test_empty_transcripts() -> None:
    assert formats.to_txt([]) == ""
    assert formats.to_srt([]) == ""
    assert formats.to_jsonl([]) == ""
    assert len(webvtt.from_string(formats.to_vtt([]), strict=True)) == 0
