"""Where the relay reads caption events: one small interface, ``CaptionSource``.

Each room's events are numbered from 1; ``events(room, after=n)`` yields every event
numbered above ``n`` and then waits for more, so a consumer that restarts resumes
where it left off. The relay reads one:

- ``SseCaptionSource`` reads the orchestrator's caption stream (SSE); positions are
  the orchestrator's stream positions (a caption's number, a correction's own number:
  docs/corrections.md), the same for every consumer and every restart. A captioner's
  correction comes as a ``CorrectionEvent``.

Every composition root (``plenary serve``, ``plenary irc``, ``plenary demo``) feeds the
relay this way, so its positions mean the same everywhere. (Tests and benchmarks of the
relay alone push events through ``bench.harness.caption_feed.BusCaptionSource``.)

    async with SseCaptionSource("http://127.0.0.1:8080") as source:
        async for position, event in source.events("keynote", after=41):
            ...
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol
from urllib.parse import quote

import aiohttp

from plenary.events import CaptionEvent
from plenary.wire import WireError, served_caption, served_correction

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CorrectionEvent(CaptionEvent):
    """A captioner's correction of caption ``corrects`` (its new text and speaker)."""

    corrects: int = field(default=0, kw_only=True)
    revision: int = field(default=0, kw_only=True)


class CaptionSource(Protocol):
    def events(self, room: str, after: int = 0) -> AsyncIterator[tuple[int, CaptionEvent]]:
        """(position, event) for every event of ``room`` after ``after``, then live ones."""
        ...


# ---- the orchestrator's numbered stream over HTTP (Server-Sent Events) ---------------
#
# The SSE format is small (a few line types, WHATWG HTML § 9.2), so it is parsed here.
# The one asyncio SSE client on PyPI, aiohttp-sse-client, has had no release since
# 0.2.1 (February 2021); it is not worth a dependency.

_LINE_END = re.compile(rb"\r\n|\r|\n")
MAX_LINE = 1 << 20  # a caption line longer than this is a broken stream, not a caption


@dataclass(frozen=True, slots=True)
class SseMessage:
    event: str  # "message" unless the server named it
    data: str
    id: str  # the last event id seen so far on this stream ("" if none)


class SseParser:
    """Bytes in, messages out; no I/O. ``retry`` is the server's reconnect delay (ms)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._started = False
        self._event = ""
        self._data: list[str] = []
        self.last_id = ""
        self.retry: int | None = None

    def feed(self, chunk: bytes) -> list[SseMessage]:
        self._buffer += chunk
        if not self._started:
            if len(self._buffer) < 3 and b"\xef\xbb\xbf".startswith(self._buffer):
                return []
            self._started = True
            self._buffer = self._buffer.removeprefix(b"\xef\xbb\xbf")
        messages = []
        while (match := _LINE_END.search(self._buffer)) is not None:
            if match.group() == b"\r" and match.end() == len(self._buffer):
                break  # maybe the first half of CR LF: wait for the next byte
            line = self._buffer[: match.start()].decode("utf-8", "replace")
            self._buffer = self._buffer[match.end() :]
            message = self._line(line)
            if message is not None:
                messages.append(message)
        if len(self._buffer) > MAX_LINE:
            raise ValueError(f"SSE line longer than {MAX_LINE} bytes")
        return messages

    def _line(self, line: str) -> SseMessage | None:
        if line == "":
            data, event = self._data, self._event
            self._data, self._event = [], ""
            if not data:
                return None
            return SseMessage(event or "message", "\n".join(data), self.last_id)
        if line.startswith(":"):
            return None  # comment: the server's keepalive
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)
        return None


def caption_from_json(room: str, data: str) -> tuple[int, CaptionEvent]:
    """(seq, event) from the data of an ``event: caption``, read by the served caption
    schema (``plenary.wire.ServedCaption``, what the orchestrator's Caption.to_json emits).

    The orchestrator sends wall-clock times (``at``: end of speech, epoch ms, and
    ``duration_ms``); ``start``/``end`` of the event are therefore epoch seconds.
    Raises ``WireError`` (a ValueError) naming the bad field when it is not a caption.
    """
    caption = served_caption(data)
    if caption.seq < 1:
        raise WireError(f"caption.seq: must be a caption's number, at least 1, not {caption.seq}")
    return caption.seq, caption.event(room=room)


def correction_from_json(room: str, data: str) -> tuple[int, CorrectionEvent]:
    """(position, event) from the data of an ``event: correction`` (``ServedCorrection``:
    ``pos``, ``seq``, ``revision``, ``text``, ``speaker``, ``by``, ``at``). Raises
    ``WireError`` (a ValueError) naming the bad field otherwise."""
    item = served_correction(data)
    event = CorrectionEvent(
        room=room, speaker=item.speaker, language="", text=item.text, is_final=True,
        start=0.0, end=0.0, message_id="", corrects=item.seq, revision=item.revision,
    )  # fmt: skip
    return item.pos, event


def _parse(room: str, message: SseMessage) -> tuple[int, CaptionEvent]:
    if message.event == "correction":
        return correction_from_json(room, message.data)
    return caption_from_json(room, message.data)


class StreamError(Exception):
    """The caption stream answered with something other than an event stream."""


class SseCaptionSource:
    """Each room's numbered captions from the orchestrator: ``GET /r/<room>/captions/stream``.

    Positions are the orchestrator's caption numbers (``seq``), so a position kept by a
    relay resumes exactly: every (re)connection sends ``Last-Event-ID: <after>``. A
    stream that ends (the server dropped a slow reader with ``event: end``, or shut
    down) or fails is reopened with backoff; nothing is lost or repeated.

    ``after=0`` means "no position yet": unless ``replay`` is set, the room's stream
    then starts at its newest stored caption (asked for once, over the JSON API), so a
    fresh relay does not post a room's whole history into the channel.

        async with SseCaptionSource("http://127.0.0.1:8080", token=reader_token) as source:
            await Relay(settings.irc, source, positions=saved).run()
    """

    def __init__(
        self,
        base_url: str,
        session: aiohttp.ClientSession | None = None,
        *,
        replay: bool = False,
        token: str = "",
        reconnect_min: float = 1.0,
        reconnect_max: float = 30.0,
        read_timeout: float = 90.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.replay = replay
        # A service reader's bearer (irc.orchestrator_token): restricted rooms' captions
        # are refused without it.
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        # The server sends a keepalive comment every heartbeat (15 s by default); a
        # stream silent for longer than this is dead and is reopened.
        self.read_timeout = read_timeout
        self.connections = 0  # streams opened, over all rooms
        self.last_error = ""
        self._session = session
        self._owned: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> SseCaptionSource:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owned is not None:
            await self._owned.close()
            self._owned = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is not None:
            return self._session
        if self._owned is None:
            # One long-lived connection per room: no pool limit.
            self._owned = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return self._owned

    def _url(self, room: str, tail: str) -> str:
        return f"{self.base_url}{tail.format(room=quote(room, safe=''))}"

    async def _newest(self, room: str) -> int:
        url = self._url(room, "/api/v1/rooms/{room}/captions")
        timeout = aiohttp.ClientTimeout(total=self.read_timeout)
        params = {"after": "0", "limit": "1"}
        get = self._http().get(url, params=params, headers=self._auth, timeout=timeout)
        async with get as response:
            if response.status != 200:
                raise StreamError(f"{url}: HTTP {response.status}")
            body = await response.json()
        last = body.get("last_seq") if isinstance(body, dict) else None
        if isinstance(last, bool) or not isinstance(last, int):
            raise StreamError(f"{url}: no last_seq in the answer")
        return last

    async def events(self, room: str, after: int = 0) -> AsyncIterator[tuple[int, CaptionEvent]]:
        url = self._url(room, "/r/{room}/captions/stream")
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=self.read_timeout)
        known = after > 0 or self.replay
        failures = 0
        retry = self.reconnect_min
        while True:
            got = 0
            try:
                if not known:
                    after = await self._newest(room)
                    known = True
                headers = {
                    "Accept": "text/event-stream",
                    "Cache-Control": "no-cache",
                    "Last-Event-ID": str(after),
                    **self._auth,
                }
                async with self._http().get(url, headers=headers, timeout=timeout) as response:
                    kind = response.headers.get("Content-Type", "")
                    if response.status != 200 or not kind.startswith("text/event-stream"):
                        detail = (await response.text())[:200]
                        raise StreamError(f"HTTP {response.status} {kind}: {detail}")
                    self.connections += 1
                    parser = SseParser()
                    ended = ""
                    async for chunk in response.content.iter_any():
                        for message in parser.feed(chunk):
                            if message.event == "end":
                                ended = message.data
                                break
                            if message.event not in ("caption", "correction"):
                                continue  # partials (not asked for) and anything new
                            try:
                                seq, event = _parse(room, message)
                            except ValueError as exc:
                                log.warning("irc: caption of %s not understood: %s", room, exc)
                                continue
                            if seq <= after:
                                continue
                            after = seq
                            got += 1
                            yield seq, event
                        if parser.retry is not None:
                            retry = parser.retry / 1000
                        if ended:
                            break
                    log.info(
                        "irc: caption stream of %s ended after %d (%s); reconnecting",
                        room,
                        after,
                        ended or "closed by the server",
                    )
            except (aiohttp.ClientError, OSError, TimeoutError, StreamError, ValueError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("irc: caption stream of %s failed: %s", room, self.last_error)
            failures = 0 if got else failures + 1
            base = max(0.05, min(retry, self.reconnect_max))
            delay = min(self.reconnect_max, base * 2**failures)
            await asyncio.sleep(random.uniform(delay / 2, delay))  # noqa: S311 (jitter)
