"""Caption text → IRC message text: sanitize, prefix the speaker, split to fit.

Pure functions, no I/O. Sizes are UTF-8 bytes; cuts fall on character boundaries
(Korean is 3 bytes a character, many emoji 4), never inside a combining sequence
where that can be avoided, and at a space where there is one.

    budget = 512 - protocol.relay_overhead("bot!~bot@host", "#room")
    split_caption("Alice", "a very long caption ...", budget)
    # ['<Alice> a very long ...', '<Alice> ... caption ...']
"""

from __future__ import annotations

import re
import unicodedata

MAX_SPEAKER_CHARS = 32
# C0 controls (CTCP's \x01, IRC's bold \x02, colour \x03 and the rest), DEL, C1
# controls, and the Unicode line and paragraph separators: none of them belongs in
# a caption. CR, LF and tabs become spaces so words stay apart.
_WHITESPACE_CONTROLS = re.compile(r"[\t\n\v\f\r\x1c-\x1f\x85\u2028\u2029]")
_COLOUR = re.compile(r"\x03(\d{1,2}(,\d{1,2})?)?|\x04[0-9A-Fa-f]{0,6}(,[0-9A-Fa-f]{6})?")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SPACES = re.compile(r" {2,}")
# Characters that must stay glued to the one before them.
_JOINERS = {"\u200d", "\ufe0e", "\ufe0f", "\u20e3"}


def sanitize(text: str, *, formatting: bool = False) -> str:
    """Text safe to put into a PRIVMSG: no CR, LF, NUL, CTCP or other control.

    With ``formatting=True`` IRC's bold/colour/italic/underline/reset codes survive;
    by default they are removed together with colour numbers.
    """
    text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates → '?'
    text = _WHITESPACE_CONTROLS.sub(" ", text)
    if formatting:
        keep = {"\x02", "\x03", "\x0f", "\x11", "\x16", "\x1d", "\x1e", "\x1f"}
        text = "".join(c for c in text if c in keep or not _CONTROLS.match(c))
    else:
        text = _CONTROLS.sub("", _COLOUR.sub("", text))
    return _SPACES.sub(" ", text).strip()


def speaker_prefix(speaker: str) -> str:
    name = sanitize(speaker).replace(" ", "_")[:MAX_SPEAKER_CHARS] or "?"
    return f"<{name}> "


def _glued(text: str, index: int) -> bool:
    """True when a cut before ``text[index]`` would split a character sequence."""
    if index <= 0 or index >= len(text):
        return False
    ch, before = text[index], text[index - 1]
    if ch in _JOINERS or before == "\u200d" or unicodedata.combining(ch):
        return True
    # Regional indicators come in pairs (flags); surrogate-free Python strs need no more.
    if "\U0001f1e6" <= ch <= "\U0001f1ff" and "\U0001f1e6" <= before <= "\U0001f1ff":
        run = 0
        while index - run - 1 >= 0 and "\U0001f1e6" <= text[index - run - 1] <= "\U0001f1ff":
            run += 1
        return run % 2 == 1
    return 0x1F3FB <= ord(ch) <= 0x1F3FF  # skin tone modifiers


def cut(text: str, budget: int) -> tuple[str, str]:
    """Split ``text`` into (head, rest) with ``len(head.encode()) <= budget``.

    Prefers the last space that leaves a non-empty head; otherwise cuts between
    characters (a word longer than a line). Both parts are stripped of the space.
    """
    if budget < 4:
        raise ValueError(f"budget of {budget} bytes cannot hold one character")
    if len(text.encode("utf-8")) <= budget:
        return text, ""
    # Characters that fit: walk forward summing byte lengths.
    used = 0
    fit = 0
    for ch in text:
        size = len(ch.encode("utf-8"))
        if used + size > budget:
            break
        used += size
        fit += 1
    space = text.rfind(" ", 0, fit + 1)
    if space > 0:
        return text[:space].rstrip(" "), text[space + 1 :].lstrip(" ")
    end = fit
    while end > 1 and _glued(text, end):
        end -= 1
    if end <= 1 and _glued(text, fit):
        end = fit  # one sequence longer than a line: cut it after all
    return text[:end], text[end:].lstrip(" ")


def split_text(text: str, budget: int) -> list[str]:
    """All pieces of ``text``, each at most ``budget`` UTF-8 bytes."""
    pieces: list[str] = []
    rest = text
    while rest:
        head, rest = cut(rest, budget)
        if head:
            pieces.append(head)
    return pieces


def split_caption(speaker: str, text: str, budget: int) -> list[str]:
    """``<Speaker> text`` lines, each at most ``budget`` bytes, every one prefixed."""
    prefix = speaker_prefix(speaker)
    room = budget - len(prefix.encode("utf-8"))
    return [prefix + piece for piece in split_text(sanitize(text), room)]


def line_count(speaker: str, text: str, budget: int) -> int:
    """How many lines ``split_caption`` would make, without building them for long texts."""
    room = budget - len(speaker_prefix(speaker).encode("utf-8"))
    size = len(text.encode("utf-8"))
    if size <= room:
        return 1 if text else 0
    return len(split_text(text, room))


def correction_line(speaker: str, text: str) -> str:
    """A captioner's correction as one line: ``* correction: <Speaker> new text``."""
    return f"* correction: {speaker_prefix(speaker)}{sanitize(text)}"
