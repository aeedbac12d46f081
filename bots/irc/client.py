"""One IRC connection serving many rooms and channels: the only module doing network I/O.

    client = IrcClient(settings.irc.networks["default"], on_delivered=print)
    queue = client.add_room("keynote", "#keynote", key="", transcript_url="https://…")
    client.post(queue, "Alice", "Hello everyone", position=17)
    await client.run()  # connects, registers, joins, sends; reconnects until closed

The protocol itself is ``Session`` (state.py), fed every parsed line; this module owns
the socket (TLS or plain), reads lines into the session, writes what it says through
the flood limiter (flood.TokenBucket), keeps the connection alive and reconnects with
backoff. The session's events become the callbacks:

- ``on_delivered(room, position)``: a line counts as delivered when the server has
  answered a PING sent after it, so lines written into a dying connection are sent
  again after the reconnect instead of being lost; the room may resume after
  ``position``.
- ``on_command(asked)``: someone said ``!…`` (events.CommandAsked); the answer lines
  returned go back by NOTICE.
- ``on_protection(channel, protected, detail)``: ``protect(channel, key,
  restricted=True)`` makes the client set the key (+k, and ``modes`` such as +R) on the
  channel whenever it joins it and watch that they stay; this hears whether that worked
  and, if not, why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Callable

from bots.irc import protocol
from bots.irc.channels import Channel, retry_delay
from bots.irc.events import (
    CommandAsked,
    Delivered,
    Event,
    Exempt,
    IrcError,
    Protection,
    Registered,
    SaslError,
)
from bots.irc.flood import MergeQueue, TokenBucket
from bots.irc.identifiers import Identifier
from bots.irc.lines import sanitize
from bots.irc.numerics import Command
from bots.irc.protocol import format_line
from bots.irc.state import Session
from plenary.settings import IrcNetworkSettings

__all__ = ["Channel", "CommandAsked", "IrcClient", "IrcError", "SaslError"]

log = logging.getLogger(__name__)


class IrcClient:
    def __init__(
        self,
        settings: IrcNetworkSettings,
        *,
        on_delivered: Callable[[str, int], None] | None = None,
        on_command: Callable[[CommandAsked], list[str]] | None = None,
        on_protection: Callable[[str, bool, str], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.on_delivered = on_delivered
        self.on_protection = on_protection
        self.on_command = on_command
        self.rng = rng or random.Random()  # noqa: S311 (jitter, not secrets)
        self.session = Session(settings, self.rng)
        self.bucket = TokenBucket(settings.burst, settings.lines_per_second, time.monotonic())
        self.registered = asyncio.Event()
        self.connections = 0  # successful registrations, all time
        self.reconnects = 0  # connections lost or failed, all time
        self.last_error = ""
        self._wake = asyncio.Event()
        self._writer: asyncio.StreamWriter | None = None
        self._closing = False

    # -- what the relay uses -------------------------------------------------------

    def add_room(
        self, room: str, channel: str, *, key: str = "", transcript_url: str = ""
    ) -> MergeQueue:
        return self.session.add_room(room, channel, key=key, transcript_url=transcript_url)

    def protect(self, channel: str, key: str, *, restricted: bool, modes: str = "") -> None:
        """Join ``channel`` with ``key``; if ``restricted``, also set the key and ``modes``
        on it (as channel operator) and report through ``on_protection``."""
        self.session.protect(channel, key, restricted=restricted, modes=modes)
        self._apply()

    def hold(self, channel: str, held: bool) -> None:
        """Be in ``channel`` and post to it (``held``), or part it and post nothing there
        (another relay holds it). Channels are held from the start unless told here."""
        self.session.channels.want(channel, held, registered=self.registered.is_set())
        self._apply()

    def post(self, queue: MergeQueue, speaker: str, text: str, position: int) -> None:
        text = sanitize(text, formatting=self.settings.formatting)
        if text:
            queue.push(speaker, text, position)
            self._wake.set()

    def post_line(self, queue: MergeQueue, text: str, position: int) -> None:
        """A line already formatted (a correction); sanitized again all the same."""
        text = sanitize(text)
        if text:
            queue.push_line(text, position)
            self._wake.set()

    def ident(self, name: str) -> Identifier:
        """``name`` compared the way this server compares nicks and channels."""
        return self.session.ident(name)

    @property
    def backlog(self) -> int:
        """Lines waiting over all rooms of this connection (unconfirmed ones included)."""
        return self.session.delivery.backlog

    # -- what the session knows (read by the relay, its metrics and tests) ---------

    @property
    def channels(self) -> dict[str, Channel]:
        """By name, compared as the server compares them (keys are Identifiers)."""
        return self.session.channels.by_name

    @property
    def queues(self) -> list[MergeQueue]:
        return self.session.delivery.queues

    @property
    def nick(self) -> str:
        return self.session.me.nick

    @property
    def nicklen(self) -> int | None:
        return self.session.me.nicklen

    @property
    def hostmask(self) -> str:
        return self.session.me.hostmask

    @property
    def isupport(self) -> dict[str, str | None]:
        return self.session.me.isupport

    @property
    def caps(self) -> set[str]:
        return self.session.me.caps

    @property
    def user_modes(self) -> str:
        return self.session.me.user_modes

    @property
    def exempt(self) -> bool:
        return self.session.me.exempt

    @property
    def lines_sent(self) -> int:
        return self.session.delivery.lines_sent

    # -- running -------------------------------------------------------------------

    async def close(self) -> None:
        self._closing = True
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._write([format_line(Command.QUIT, "Plenary relay stopping")])
                await self._writer.drain()
            self._writer.close()

    async def run(self) -> None:
        """Connect and serve until close(); reconnect with backoff. Raises SaslError."""
        attempt = 0
        while not self._closing:
            started = time.monotonic()
            try:
                await self._connection()
            except SaslError:
                raise
            except (OSError, EOFError, IrcError, TimeoutError, ssl.SSLError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "irc %s:%s: %s", self.settings.host, self.settings.port, self.last_error
                )
            finally:
                self._teardown()
            if self._closing:
                break
            if self.registered.is_set() and time.monotonic() - started > 30:
                attempt = 0
            self.registered.clear()
            self.reconnects += 1
            delay = retry_delay(self.settings, self.rng, attempt)
            attempt += 1
            log.info("irc: reconnecting in %.1f s", delay)
            await asyncio.sleep(delay)

    def _ssl_context(self) -> ssl.SSLContext | None:
        s = self.settings
        if not s.tls:
            return None
        context = ssl.create_default_context(cafile=str(s.tls_ca_file) if s.tls_ca_file else None)
        if not s.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def _connection(self) -> None:
        s = self.settings
        context = self._ssl_context()
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                s.host, s.port, ssl=context, server_hostname=s.host if context else None
            ),
            s.registration_timeout,
        )
        self._writer = writer
        tasks = [
            asyncio.create_task(self._read_loop(reader)),
            asyncio.create_task(self._serve()),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raises what ended the connection
            raise IrcError("connection closed")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _teardown(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.session.reset()
        self._apply()

    async def _serve(self) -> None:
        s = self.settings
        self._write(self.session.hello(time.monotonic()))
        await asyncio.wait_for(self.registered.wait(), s.registration_timeout)
        await asyncio.gather(self._write_loop(), self._keepalive())

    # -- the socket ------------------------------------------------------------------

    def _write(self, lines: list[str]) -> None:
        if self._writer is None:
            raise IrcError("not connected")
        for line in lines:
            log.debug("irc >> %s", line)
            self._writer.write(protocol.wire(line))

    def _apply(self) -> None:
        """Write the lines the session has for now and act on its events."""
        if self._writer is not None:
            self._write(self.session.out.take_lines())
        for event in self.session.out.take_events():
            self._on_event(event)
        if self.session.out.take_wake():
            self._wake.set()

    def _on_event(self, event: Event) -> None:
        if isinstance(event, Registered):
            self.registered.set()
            self.connections += 1
            log.info("irc: registered on %s as %s", self.settings.host, event.nick)
        elif isinstance(event, Delivered):
            if self.on_delivered is not None:
                self.on_delivered(event.room, event.position)
        elif isinstance(event, Protection):
            if self.on_protection is not None:
                self.on_protection(event.channel, event.protected, event.detail)
        elif isinstance(event, CommandAsked):
            replies = self.on_command(event) if self.on_command is not None else []
            self.session.answer(event, replies)
        elif isinstance(event, Exempt):
            self._set_rate(event.exempt)

    def _set_rate(self, exempt: bool) -> None:
        """Send at ``lines_per_second_exempt`` while the server exempts us."""
        s = self.settings
        rate = s.lines_per_second_exempt if exempt and s.lines_per_second_exempt else None
        self.bucket.set_rate(rate or s.lines_per_second, time.monotonic())
        if exempt:
            log.info(
                "irc: %s exempts the relay from flood limits (+F); sending up to %.1f lines a "
                "second",
                s.host,
                self.bucket.rate,
            )

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                raw = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError:
                raise IrcError("server closed the connection") from None
            except asyncio.LimitOverrunError:
                raise IrcError("server sent a line over 64 KiB") from None
            self.session.heard(time.monotonic())
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not text.strip():
                continue
            log.debug("irc << %s", text)
            try:
                message = protocol.parse(text)
            except protocol.LineError:
                continue
            try:
                self._write(self.session.handle(message, time.monotonic()))
            except protocol.LineError as exc:
                log.warning("irc: cannot answer %r: %s", text, exc)
            self._apply()
            if self._writer is not None:
                await self._writer.drain()

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.settings.ping_interval / 4))
            self._write(self.session.tick(time.monotonic()))

    async def _write_loop(self) -> None:
        assert self._writer is not None
        session = self.session
        while True:
            now = time.monotonic()
            if not session.busy(now):
                if session.confirm_due(busy=False):
                    self._confirm()
                    await self._writer.drain()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 1.0)
                continue
            delay = self.bucket.delay(now)
            if delay:
                await asyncio.sleep(delay)  # captions arriving meanwhile merge in the queue
                continue
            item = session.next_line(now, self.bucket.available(now))
            if item is None:
                continue
            line, caption = item
            self.bucket.take(now)
            self._write([line])
            if caption and session.confirm_due(session.busy(time.monotonic())):
                self._confirm()
            await self._writer.drain()

    def _confirm(self) -> None:
        """The PING that confirms the lines sent; it costs a token like a line does."""
        self.bucket.take(time.monotonic())
        self._write([self.session.confirm()])
