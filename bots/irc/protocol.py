"""IRC lines (RFC 1459/2812 with IRCv3 message tags, docs/protocols.md §6): parse and format.

Pure functions, no I/O; ``client.py`` is the only module that touches a socket.
Names are compared with identifiers.py, commands and numerics named in numerics.py.

    msg = parse("@time=2024-01-01T00:00:00Z :nick!u@h PRIVMSG #chan :hi there")
    msg.command, msg.params  # ('PRIVMSG', ['#chan', 'hi there'])
    format_line("PRIVMSG", "#chan", "hi there")  # 'PRIVMSG #chan :hi there'
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field

MAX_LINE_BYTES = 512  # including the CR LF (RFC 1459 §2.3)
# The part of a hostmask we cannot know before the server tells us: RFC 1035 lets a
# host label be 63 bytes, and that is the longest host common servers will show.
WORST_CASE_HOST = 63
WORST_CASE_USER = 10

_TAG_UNESCAPE = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
_FORBIDDEN = re.compile(r"[\r\n\x00]")
_HOSTMASK = re.compile(r"^[^\s!@]+![^\s!@]+@[^\s!@]+$")
RFC_NICKLEN = 9  # RFC 2812 §1.2.1: every server takes nicks of up to 9 characters
_NOT_NICK = re.compile(r"[^A-Za-z0-9\[\]\\`_^{|}-]")
_LIMIT = re.compile(r"(?:max(?:imum)?\b\.?|limit)\D{0,24}?(\d{1,3})", re.IGNORECASE)


class LineError(ValueError):
    """A parameter cannot be put on the wire as given (CR, LF, NUL, or a bad middle param)."""


@dataclass(frozen=True, slots=True)
class Message:
    """One parsed line. ``source`` is the prefix without its colon, or None."""

    command: str
    params: list[str] = field(default_factory=list)
    source: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def nick(self) -> str:
        """The nick of a ``nick!user@host`` source (or the server name)."""
        return (self.source or "").split("!", 1)[0]

    def param(self, index: int, default: str = "") -> str:
        return self.params[index] if -len(self.params) <= index < len(self.params) else default


def _unescape_tag(value: str) -> str:
    out: list[str] = []
    chars = iter(value)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, "")
            out.append(_TAG_UNESCAPE.get(nxt, nxt))
        else:
            out.append(ch)
    return "".join(out)


def parse(line: str) -> Message:
    """Parse one line (with or without its CR LF). Raises LineError on an empty line."""
    rest = line.rstrip("\r\n")
    tags: dict[str, str] = {}
    if rest.startswith("@"):
        raw_tags, _, rest = rest[1:].partition(" ")
        for item in raw_tags.split(";"):
            if item:
                key, _, value = item.partition("=")
                tags[key] = _unescape_tag(value)
        rest = rest.lstrip(" ")
    source = None
    if rest.startswith(":"):
        source, _, rest = rest[1:].partition(" ")
        rest = rest.lstrip(" ")
    trailing = None
    if " :" in rest:
        rest, trailing = rest.split(" :", 1)
    elif rest.startswith(":"):
        rest, trailing = "", rest[1:]
    words = rest.split()
    if not words:
        raise LineError(f"no command in {line!r}")
    params = words[1:]
    if trailing is not None:
        params.append(trailing)
    return Message(words[0].upper(), params, source, tags)


def format_line(command: str, *params: str) -> str:
    """One line without CR LF. The last parameter gets a colon when it needs one.

    Raises LineError when any part holds CR, LF or NUL, or a middle parameter is
    empty, starts with a colon or holds a space: callers sanitize text first
    (lines.sanitize); this is the last guard before the wire.
    """
    parts = [command]
    for index, param in enumerate(params):
        if _FORBIDDEN.search(param):
            raise LineError(f"CR, LF or NUL in parameter {index} of {command}")
        last = index == len(params) - 1
        if last and (not param or " " in param or param.startswith(":")):
            parts.append(":" + param)
        elif not param or " " in param or param.startswith(":"):
            raise LineError(f"middle parameter {param!r} of {command}")
        else:
            parts.append(param)
    if _FORBIDDEN.search(command) or " " in command:
        raise LineError(f"bad command {command!r}")
    return " ".join(parts)


def wire(line: str) -> bytes:
    """The bytes to send for a formatted line; raises LineError when too long."""
    data = line.encode("utf-8") + b"\r\n"
    if len(data) > MAX_LINE_BYTES:
        raise LineError(f"line of {len(data)} bytes exceeds {MAX_LINE_BYTES}")
    return data


def relay_overhead(hostmask: str, target: str, command: str = "PRIVMSG") -> int:
    """Bytes the server adds around our text when relaying it, CR LF included.

    ``:nick!user@host PRIVMSG #chan :`` + text + CR LF must fit in 512 bytes.
    """
    return len(f":{hostmask} {command} {target} :".encode()) + 2


def worst_case_hostmask(nick: str, user: str) -> str:
    """What to assume before the server told us our host."""
    return f"{nick}!~{user[:WORST_CASE_USER]}@{'h' * WORST_CASE_HOST}"


def hostmask_in(text: str) -> str | None:
    """``nick!user@host`` from the last word of RPL_WELCOME's text, if it is one."""
    words = text.split()
    if words and _HOSTMASK.match(words[-1]):
        return words[-1]
    return None


def parse_userhost(reply: str) -> dict[str, str]:
    """RPL_USERHOST (302) text ``nick=+user@host nick2*=-u@h`` → {nick: user@host}."""
    result: dict[str, str] = {}
    for item in reply.split():
        name, sep, mask = item.partition("=")
        if sep and len(mask) > 1:
            result[name.rstrip("*")] = mask[1:]
    return result


def parse_isupport(tokens: list[str]) -> dict[str, str | None]:
    """RPL_ISUPPORT (005) tokens, without the nick and the trailing text.

    ``['BOT=B', 'CHANTYPES=#', 'EXCEPTS', '-KNOCK']`` → {'BOT': 'B', 'CHANTYPES': '#',
    'EXCEPTS': '', '-KNOCK': None}; a ``-KEY`` token withdraws a feature (value None).
    """
    result: dict[str, str | None] = {}
    for token in tokens:
        if token.startswith("-"):
            result[token[1:]] = None
            continue
        key, _, value = token.partition("=")
        result[key] = re.sub(r"\\x([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), value)
    return result


def valid_nick(nick: str, limit: int) -> str:
    """``nick`` as RFC 2812 allows it: letters, digits and ``[]\\`_^{|}-`` only, not
    starting with a digit or ``-``, at most ``limit`` characters ("plenary" if nothing
    is left)."""
    cleaned = _NOT_NICK.sub("", nick).lstrip("0123456789-") or "plenary"
    return cleaned[: max(1, limit)]


def nick_limit(text: str) -> int | None:
    """The longest nick a 432 reply's text names, e.g. ngircd's "Nickname too long,
    max. 9 characters" → 9; None when it names none."""
    found = _LIMIT.search(text)
    return int(found.group(1)) if found and int(found.group(1)) > 0 else None


def alternative_nick(nick: str, limit: int, attempt: int, number: int) -> str:
    """Another nick when ``nick`` is taken, never longer than ``limit``: ``nick_``,
    ``nick__``, then ``nick`` cut short with ``number`` (e.g. 4 random digits) behind."""
    suffix = "_" * attempt if attempt <= 2 else str(number)
    suffix = suffix[: max(1, limit - 1)]
    return valid_nick(nick, limit - len(suffix)) + suffix


def parse_caps(text: str) -> dict[str, str]:
    """The capability list of a CAP LS/ACK line: ``'sasl=PLAIN,EXTERNAL server-time'``."""
    caps: dict[str, str] = {}
    for item in text.split():
        name, _, value = item.partition("=")
        caps[name.lstrip("-~=")] = value
    return caps


def sasl_plain(username: str, password: str, authzid: str = "") -> list[str]:
    """AUTHENTICATE arguments for SASL PLAIN: base64 in 400-byte chunks.

    A payload that is an exact multiple of 400 bytes ends with ``+`` (IRCv3 sasl-3.1).
    """
    payload = base64.b64encode(f"{authzid}\0{username}\0{password}".encode()).decode()
    chunks = [payload[i : i + 400] for i in range(0, len(payload), 400)]
    if not chunks or len(chunks[-1]) == 400:
        chunks.append("+")
    return chunks


def mode_changes(
    modes: str, args: list[str], chanmodes: str | None, prefix: str | None = None
) -> list[tuple[bool, str, str]]:
    """[(adding, mode, argument or "")] of a channel MODE line or RPL_CHANNELMODEIS.

    ``chanmodes`` is ISUPPORT CHANMODES (A,B,C,D): A and B take an argument always, C
    only when set; ``prefix`` is ISUPPORT PREFIX, whose modes (o, v) take a nick.
    Without ISUPPORT the RFC 2811 defaults apply.
    """
    groups = [*(chanmodes or "beI,k,l,imnpst").split(","), "", "", ""]
    always = set(groups[0] + groups[1])
    when_set = set(groups[2])
    if prefix and prefix.startswith("(") and ")" in prefix:
        always |= set(prefix[1 : prefix.index(")")])
    else:
        always |= {"o", "v"}
    out: list[tuple[bool, str, str]] = []
    adding = True
    rest = list(args)
    for ch in modes:
        if ch in "+-":
            adding = ch == "+"
            continue
        takes = ch in always or (adding and ch in when_set)
        out.append((adding, ch, rest.pop(0) if takes and rest else ""))
    return out
