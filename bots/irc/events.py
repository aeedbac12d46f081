"""What the protocol state (state.py and its parts) asks of the I/O loop (client.py).

The state never writes to a socket. It puts lines into an ``Outbox`` and the client
writes them: ``lines`` at once (registration, PONG, JOIN: unpaced, as the server
expects them), ``paced`` through the flood limiter ahead of captions (command answers,
channel MODE queries and changes). ``events`` tell the client what happened, for its
callbacks and counters; ``wake`` says a paced line or a caption may be sendable now.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


class IrcError(Exception):
    """The connection failed; the client reconnects."""


class SaslError(IrcError):
    """The server refused our SASL credentials; reconnecting would not help."""


@dataclass(frozen=True, slots=True)
class Registered:
    """The server welcomed us (end of MOTD) under ``nick``."""

    nick: str


@dataclass(frozen=True, slots=True)
class Delivered:
    """Every line of ``room`` up to the caption event ``position`` reached its channel."""

    room: str
    position: int


@dataclass(frozen=True, slots=True)
class Protection:
    """Whether a restricted room's ``channel`` has its key (and modes) set, else why not."""

    channel: str
    protected: bool
    detail: str


@dataclass(frozen=True, slots=True)
class CommandAsked:
    """Someone said ``text`` (starting with ``!``) to us or in one of our channels.

    ``rooms`` are the rooms whose channel is ``target`` (empty in a private message);
    answers go to ``reply_to`` by NOTICE (``Session.answer``)."""

    target: str
    sender: str
    text: str
    reply_to: str
    rooms: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Exempt:
    """The server now does (or no longer does) exempt us from its flood limits."""

    exempt: bool


Event = Registered | Delivered | Protection | CommandAsked | Exempt


class Outbox:
    def __init__(self) -> None:
        self.lines: list[str] = []  # to write now
        self.paced: deque[str] = deque()  # through the flood limiter, before captions
        self.events: list[Event] = []
        self.wake = False

    def send(self, line: str) -> None:
        self.lines.append(line)

    def queue(self, line: str) -> None:
        self.paced.append(line)
        self.wake = True

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def take_lines(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines

    def take_events(self) -> list[Event]:
        events, self.events = self.events, []
        return events

    def take_wake(self) -> bool:
        wake, self.wake = self.wake, False
        return wake
