"""One IRC connection serving many rooms and channels: the only module doing network I/O.

    client = IrcClient(settings.irc.networks["default"], on_delivered=print)
    queue = client.add_room("keynote", "#keynote", key="", transcript_url="https://…")
    client.post(queue, "Alice", "Hello everyone", position=17)
    await client.run()  # connects, registers, joins, sends; reconnects until closed

Delivery: a line counts as delivered when the server has answered a PING sent after
it (servers handle a client's lines in order), so lines written into a dying
connection are sent again after the reconnect instead of being lost. ``on_delivered``
is then called with the room and the caption event id to resume after.

Protection: ``protect(channel, key, restricted=True)`` makes the client set the key
(+k, and ``modes`` such as +R) on the channel whenever it joins it, and watch that
they stay; ``on_protection(channel, protected, detail)`` hears whether that worked and,
if not, why (not a channel operator, a mode the server lacks, someone else's key).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from bots.irc import protocol
from bots.irc.flood import MergeQueue, OutLine, TokenBucket
from bots.irc.lines import cut, sanitize
from bots.irc.protocol import Message, format_line
from plenary.settings import IrcNetworkSettings

log = logging.getLogger(__name__)

WANTED_CAPS = ("server-time", "message-tags")
JOIN_REFUSED = {"403", "405", "471", "473", "474", "475", "476", "477", "489"}
SASL_FAILED = {"902", "904", "905", "906", "908"}
KEEPALIVE = "plenary-keepalive"


class IrcError(Exception):
    """The connection failed; the client reconnects."""


class SaslError(IrcError):
    """The server refused our SASL credentials; reconnecting would not help."""


@dataclass(slots=True)
class Channel:
    name: str
    key: str
    joined: bool = False
    failures: int = 0
    paused_until: float = 0.0
    protect: bool = False  # set key (and modes) and keep them set
    modes: str = ""  # modes without argument to set besides +k, e.g. "R"
    current: dict[str, str] | None = None  # its modes as last seen; None: not asked yet
    reported: tuple[bool, str] | None = None  # last (protected, detail) told


class IrcClient:
    def __init__(
        self,
        settings: IrcNetworkSettings,
        *,
        on_delivered: Callable[[str, int], None] | None = None,
        on_command: Callable[[str, str, str], list[str]] | None = None,
        on_protection: Callable[[str, bool, str], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.on_delivered = on_delivered
        self.on_protection = on_protection
        self.on_command = on_command  # (channel or our nick, sender, text) → reply lines
        self.rng = rng or random.Random()  # noqa: S311 (jitter, not secrets)
        self.channels: dict[str, Channel] = {}
        self.queues: list[MergeQueue] = []
        self.nicklen: int | None = None  # the server's NICKLEN, kept across reconnects
        self.nick = settings.nick
        self.exempt = False  # the server exempts us from flood limits (ngircd: +F)
        self.hostmask = protocol.worst_case_hostmask(settings.nick, settings.username)
        self.isupport: dict[str, str | None] = {}
        self.caps: set[str] = set()
        self.user_modes = ""  # our modes as the server reports them, e.g. "iB"
        self.registered = asyncio.Event()
        self.connections = 0  # successful registrations, all time
        self.lines_sent = 0
        self.reconnects = 0  # connections lost or failed, all time
        self.last_error = ""
        self._wake = asyncio.Event()
        self._control: deque[str] = deque()  # command replies, sent before captions
        self._inflight: list[OutLine] = []
        self._confirming: tuple[str, int] | None = None  # (PING token, lines it covers)
        self._refused: dict[str, int] = {}  # 404s per channel since the last confirmation
        self._writer: asyncio.StreamWriter | None = None
        self._closing = False
        self._rr = 0
        self._pings = 0
        self._last_recv = 0.0
        self._keepalive_sent = 0.0
        self._cap_ls: dict[str, str] = {}
        self._nick_tries = 0
        self._nick_base = ""
        self._server_user_modes = ""
        self.bucket = TokenBucket(settings.burst, settings.lines_per_second, time.monotonic())

    # -- what the relay uses -------------------------------------------------------

    def add_room(
        self, room: str, channel: str, *, key: str = "", transcript_url: str = ""
    ) -> MergeQueue:
        folded = self._fold(channel)
        self.channels.setdefault(folded, Channel(channel, key))
        queue = MergeQueue(
            room, channel, max_lines=self.settings.max_backlog_lines, transcript_url=transcript_url
        )
        queue.budget = self._budget(channel)
        self.queues.append(queue)
        return queue

    def protect(self, channel: str, key: str, *, restricted: bool, modes: str = "") -> None:
        """Join ``channel`` with ``key``; if ``restricted``, also set the key and ``modes``
        on it (as channel operator) and report through ``on_protection``."""
        found = self.channels.get(self._fold(channel))
        if found is None:
            return
        changed = (found.key, found.protect, found.modes) != (key, restricted, modes)
        found.key, found.protect, found.modes = key, restricted, modes
        if changed and found.joined and restricted and self._writer is not None:
            self._ask_modes(found)

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

    @property
    def backlog(self) -> int:
        """Lines waiting over all rooms of this connection (unconfirmed ones included)."""
        return sum(q.backlog for q in self.queues) + len(self._inflight)

    async def close(self) -> None:
        self._closing = True
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._send(format_line("QUIT", "Plenary relay stopping"))
                await self._writer.drain()
            self._writer.close()

    async def run(self) -> None:
        """Connect and serve until close(); reconnect with backoff. Raises SaslError."""
        attempt = 0
        while not self._closing:
            started = time.monotonic()
            try:
                await self._session()
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
            delay = self._backoff(attempt)
            attempt += 1
            log.info("irc: reconnecting in %.1f s", delay)
            await asyncio.sleep(delay)

    # -- one connection ------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        s = self.settings
        ceiling = min(s.reconnect_max, s.reconnect_min * 2 ** min(attempt, 30))
        return self.rng.uniform(ceiling / 2, ceiling)

    def _ssl_context(self) -> ssl.SSLContext | None:
        s = self.settings
        if not s.tls:
            return None
        context = ssl.create_default_context(cafile=str(s.tls_ca_file) if s.tls_ca_file else None)
        if not s.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def _session(self) -> None:
        s = self.settings
        context = self._ssl_context()
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                s.host, s.port, ssl=context, server_hostname=s.host if context else None
            ),
            s.registration_timeout,
        )
        self._writer = writer
        self._last_recv = time.monotonic()
        tasks = [
            asyncio.create_task(self._read_loop(reader)),
            asyncio.create_task(self._serve()),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raises what ended the session
            raise IrcError("connection closed")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _teardown(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        # Lines not confirmed may never have reached the channel: send them again.
        for queue in self.queues:
            queue.requeue([line for line in self._inflight if line.room == queue.room])
        self._inflight.clear()
        self._confirming = None
        self._refused.clear()
        self._control.clear()
        self.caps.clear()
        self.user_modes = ""
        self._cap_ls.clear()
        for channel in self.channels.values():
            channel.joined = False
            channel.current = None
        self.nick = protocol.valid_nick(self.settings.nick, self.nicklen or 512)
        self._exempt(False)
        self._set_hostmask(protocol.worst_case_hostmask(self.nick, self.settings.username))
        self._nick_tries = 0
        self._nick_base = ""
        self._server_user_modes = ""
        self._keepalive_sent = 0.0

    async def _serve(self) -> None:
        s = self.settings
        self._send(format_line("CAP", "LS", "302"))
        if s.password:
            self._send(format_line("PASS", s.password))
        self._send(format_line("NICK", self.nick))
        self._send(format_line("USER", s.username, "0", "*", s.realname))
        await asyncio.wait_for(self.registered.wait(), s.registration_timeout)
        self.connections += 1
        log.info("irc: registered on %s as %s", s.host, self.nick)
        bot_mode = self.isupport.get("BOT")
        if bot_mode:
            self._send(format_line("MODE", self.nick, "+" + bot_mode))
        if s.oper_name:  # before any JOIN: the server answers in order
            self._send(format_line("OPER", s.oper_name, s.oper_password))
        self._send(format_line("USERHOST", self.nick))
        for channel in self.channels.values():
            self._join(channel)
        await asyncio.gather(self._write_loop(), self._keepalive())

    def _join(self, channel: Channel) -> None:
        if channel.key:
            self._send(format_line("JOIN", channel.name, channel.key))
        else:
            self._send(format_line("JOIN", channel.name))

    def _send(self, line: str) -> None:
        if self._writer is None:
            raise IrcError("not connected")
        log.debug("irc >> %s", line)
        self._writer.write(protocol.wire(line))

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                raw = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError:
                raise IrcError("server closed the connection") from None
            except asyncio.LimitOverrunError:
                raise IrcError("server sent a line over 64 KiB") from None
            self._last_recv = time.monotonic()
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not text.strip():
                continue
            log.debug("irc << %s", text)
            try:
                message = protocol.parse(text)
            except protocol.LineError:
                continue
            try:
                self._handle(message)
            except protocol.LineError as exc:
                log.warning("irc: cannot answer %r: %s", text, exc)
            if self._writer is not None:
                await self._writer.drain()

    async def _keepalive(self) -> None:
        s = self.settings
        while True:
            await asyncio.sleep(min(1.0, s.ping_interval / 4))
            now = time.monotonic()
            if self._keepalive_sent and now - self._keepalive_sent > s.ping_timeout:
                raise IrcError(f"no reply to PING for {s.ping_timeout:.0f} s")
            if not self._keepalive_sent and now - self._last_recv > s.ping_interval:
                self._keepalive_sent = now
                self._send(format_line("PING", KEEPALIVE))
            for channel in self.channels.values():
                if not channel.joined and channel.paused_until and now >= channel.paused_until:
                    channel.paused_until = 0.0
                    self._join(channel)

    # -- sending -------------------------------------------------------------------

    def _next_line(self, now: float) -> str | OutLine | None:
        if self._control:
            return self._control.popleft()
        ready = [q for q in self.queues if len(q) and self._sendable(q.target, now)]
        if not ready:
            return None
        self._rr = (self._rr + 1) % len(ready)
        # Pack other speakers' captions into the line when the tokens there now cannot
        # send every waiting line on its own: a conversation then never falls behind.
        waiting = sum(q.backlog for q in ready)
        return ready[self._rr].take(pack=self.bucket.available(now) < waiting)

    def _sendable(self, target: str, now: float) -> bool:
        channel = self.channels.get(self._fold(target))
        if channel is None or not channel.joined or now < channel.paused_until:
            return False
        # A restricted room's channel gets captions only once its key is set: where the
        # relay cannot set it, they are held back (fail closed) and the log and the room
        # page say why.
        return not channel.protect or (channel.reported is not None and channel.reported[0])

    def _confirm_due(self, busy: bool) -> bool:
        """Whether a PING goes right behind the lines sent: when no line waits, or after
        ``confirm_every`` unconfirmed lines (a PING behind every line would halve the
        line rate on servers that pace PING like any command)."""
        if not self._inflight or self._confirming is not None:
            return False
        return not busy or len(self._inflight) >= self.settings.confirm_every

    def _busy(self, now: float) -> bool:
        return bool(self._control) or any(
            len(q) and self._sendable(q.target, now) for q in self.queues
        )

    async def _write_loop(self) -> None:
        assert self._writer is not None
        while True:
            now = time.monotonic()
            if not self._busy(now):
                if self._confirm_due(busy=False):
                    self._ping_confirm()
                    await self._writer.drain()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 1.0)
                continue
            delay = self.bucket.delay(now)
            if delay:
                await asyncio.sleep(delay)  # captions arriving meanwhile merge in the queue
                continue
            item = self._next_line(now)
            if item is None:
                continue
            self.bucket.take(now)
            if isinstance(item, str):
                self._send(item)
            else:
                self._send(format_line("PRIVMSG", item.target, item.text))
                self._inflight.append(item)
                self.lines_sent += 1
                if self._confirm_due(self._busy(time.monotonic())):
                    self._ping_confirm()
            await self._writer.drain()

    def _ping_confirm(self) -> None:
        """PING right behind the lines sent: its PONG confirms them. Servers pace every
        command (ngircd: about one a second after a burst), so it costs a token like a
        line does, borrowed if need be. Lines written before a server dies and not
        confirmed are sent again after the reconnect: with ``confirm_every`` above 1,
        a few may then be seen twice."""
        self.bucket.take(time.monotonic())
        self._pings += 1
        token = f"plenary-{self._pings}"
        self._confirming = (token, len(self._inflight))
        self._send(format_line("PING", token))

    def _confirmed(self) -> None:
        assert self._confirming is not None
        count = self._confirming[1]
        self._confirming = None
        done, self._inflight = self._inflight[:count], self._inflight[count:]
        refused: list[OutLine] = []
        for target, failures in self._refused.items():
            # Refusals are monotonic (a ban, +m): the last lines to that channel failed.
            mine = [line for line in done if self._fold(line.target) == target]
            refused.extend(mine[-failures:])
        self._refused.clear()
        for line in done:
            if any(line is r for r in refused):
                continue
            if line.position is not None and self.on_delivered is not None:
                self.on_delivered(line.room, line.position)
        for queue in self.queues:
            queue.requeue([line for line in refused if line.room == queue.room])
        if refused:
            self._wake.set()

    # -- receiving -----------------------------------------------------------------

    def _handle(self, msg: Message) -> None:
        handler: Callable[[Message], None] | None = getattr(
            self, f"_on_{msg.command.lower()}", None
        )
        if handler is not None:
            handler(msg)
        elif msg.command in JOIN_REFUSED and len(msg.params) >= 2:
            self._join_failed(msg.params[1], msg.param(-1))
        elif msg.command in SASL_FAILED:
            raise SaslError(f"SASL authentication failed ({msg.command}): {msg.param(-1)}")

    def _on_ping(self, msg: Message) -> None:
        self._send(format_line("PONG", msg.param(-1) or "x"))

    def _on_pong(self, msg: Message) -> None:
        echoed = msg.param(-1)
        if echoed == KEEPALIVE:
            self._keepalive_sent = 0.0
        elif self._confirming is not None and echoed == self._confirming[0]:
            self._confirmed()

    def _on_error(self, msg: Message) -> None:
        raise IrcError(f"server said ERROR: {msg.param(-1)}")

    def _on_cap(self, msg: Message) -> None:
        sub = msg.param(1).upper()
        if sub == "LS":
            self._cap_ls.update(protocol.parse_caps(msg.param(-1)))
            if msg.param(2) == "*":
                return  # more CAP LS lines follow
            wanted = [c for c in WANTED_CAPS if c in self._cap_ls]
            if self.settings.sasl_username:
                if "sasl" not in self._cap_ls:
                    raise SaslError("SASL is configured but the server does not offer it")
                wanted.append("sasl")
            if wanted:
                self._send(format_line("CAP", "REQ", " ".join(wanted)))
            else:
                self._send(format_line("CAP", "END"))
        elif sub == "ACK":
            acked = set(protocol.parse_caps(msg.param(-1)))
            self.caps |= acked
            if "sasl" in acked:
                self._send(format_line("AUTHENTICATE", "PLAIN"))
            else:
                self._send(format_line("CAP", "END"))
        elif sub == "NAK":
            if self.settings.sasl_username:
                raise SaslError(f"the server refused capabilities {msg.param(-1)!r}")
            self._send(format_line("CAP", "END"))

    def _on_authenticate(self, msg: Message) -> None:
        if msg.param(0) == "+":
            s = self.settings
            for chunk in protocol.sasl_plain(s.sasl_username, s.sasl_password):
                self._send(format_line("AUTHENTICATE", chunk))

    def _on_903(self, msg: Message) -> None:  # RPL_SASLSUCCESS
        self._send(format_line("CAP", "END"))

    def _on_001(self, msg: Message) -> None:  # RPL_WELCOME
        self.nick = msg.param(0, self.nick)
        mask = protocol.hostmask_in(msg.param(-1))
        self._set_hostmask(mask or protocol.worst_case_hostmask(self.nick, self.settings.username))

    def _on_004(self, msg: Message) -> None:  # RPL_MYINFO: name, version, user modes, …
        self._server_user_modes = msg.param(3)

    def _on_005(self, msg: Message) -> None:  # RPL_ISUPPORT
        self.isupport.update(protocol.parse_isupport(msg.params[1:-1]))
        nicklen = self.isupport.get("NICKLEN")
        if nicklen and nicklen.isdigit() and int(nicklen) > 0:
            self.nicklen = int(nicklen)

    def _on_376(self, msg: Message) -> None:  # RPL_ENDOFMOTD
        self.registered.set()

    _on_422 = _on_376  # ERR_NOMOTD

    def _on_381(self, msg: Message) -> None:  # RPL_YOUREOPER
        log.info("irc: the relay is an IRC operator on %s", self.settings.host)
        if "F" in self._server_user_modes:  # ngircd: relaxed flood protection, opers only
            self._send(format_line("MODE", self.nick, "+F"))

    def _on_464(self, msg: Message) -> None:  # ERR_PASSWDMISMATCH
        if self.registered.is_set():  # before registration it is the server password's
            log.warning("irc: OPER refused (%s): %s", msg.command, msg.param(-1))

    _on_491 = _on_464  # ERR_NOOPERHOST

    def _on_302(self, msg: Message) -> None:  # RPL_USERHOST
        mask = protocol.parse_userhost(msg.param(-1)).get(self.nick)
        if mask:
            self._set_hostmask(f"{self.nick}!{mask}")

    def _on_432(self, msg: Message) -> None:  # ERR_ERRONEUSNICKNAME
        if self.registered.is_set():
            return
        wanted = self.nick
        limit = protocol.nick_limit(msg.param(-1)) or self.nicklen
        if limit is None and len(wanted) > protocol.RFC_NICKLEN:
            limit = protocol.RFC_NICKLEN  # what every server takes
        if limit is not None:
            self.nicklen = limit
        nick = protocol.valid_nick(wanted, limit or len(wanted))
        if nick == wanted:  # nothing to cut or clean: the server wants another one
            nick = self._another_nick(nick)
        self._try_nick(nick, f"refused the nick {wanted!r} ({msg.command}: {msg.param(-1)})")

    def _on_433(self, msg: Message) -> None:  # ERR_NICKNAMEINUSE
        if not self.registered.is_set():
            wanted = self.nick
            nick = self._another_nick(wanted)
            self._try_nick(nick, f"has the nick {wanted!r} in use ({msg.command})")

    _on_436 = _on_437 = _on_433

    def _another_nick(self, nick: str) -> str:
        """A different nick within the server's NICKLEN (RFC 2812's 9 when unknown,
        unless ``nick`` itself was accepted as longer)."""
        self._nick_tries += 1
        base = self._nick_base or nick
        self._nick_base = base
        limit = self.nicklen or max(len(nick), protocol.RFC_NICKLEN)
        number = self.rng.randrange(1000, 10000)
        return protocol.alternative_nick(base, limit, self._nick_tries, number)

    def _try_nick(self, nick: str, what: str) -> None:
        if self._nick_tries > 10:
            raise IrcError(f"no nick accepted by {self.settings.host}: the last one {what}")
        limit = f" (NICKLEN {self.nicklen})" if self.nicklen else ""
        log.warning(
            "irc: %s %s; using %r instead%s. Set irc.networks.*.nick to a nick the server "
            "takes to keep a stable name.",
            self.settings.host,
            what,
            nick,
            limit,
        )
        self.nick = nick
        self._send(format_line("NICK", nick))

    def _on_nick(self, msg: Message) -> None:
        if self._fold(msg.nick) == self._fold(self.nick):
            self.nick = msg.param(0)
            self._set_hostmask(self.nick + "!" + self.hostmask.split("!", 1)[-1])

    def _on_join(self, msg: Message) -> None:
        if self._fold(msg.nick) != self._fold(self.nick):
            return
        if msg.source and "@" in msg.source:
            self._set_hostmask(msg.source)
        channel = self.channels.get(self._fold(msg.param(0)))
        if channel is not None:
            channel.joined = True
            channel.failures = 0
            log.info("irc: joined %s", channel.name)
            if channel.protect:
                channel.reported = None  # no caption until the key is known to be set
                self._ask_modes(channel)
            self._wake.set()

    def _on_mode(self, msg: Message) -> None:
        channel = self.channels.get(self._fold(msg.param(0)))
        if channel is not None:
            self._channel_mode(channel, msg.nick, msg.param(1), msg.params[2:])
            return
        if self._fold(msg.param(0)) != self._fold(self.nick):
            return
        adding = True
        for ch in "".join(msg.params[1:2]):
            if ch in "+-":
                adding = ch == "+"
            elif adding and ch not in self.user_modes:
                self.user_modes += ch
            elif not adding:
                self.user_modes = self.user_modes.replace(ch, "")
        self._exempt("F" in self.user_modes and "F" in self._server_user_modes)

    _on_221 = _on_mode  # RPL_UMODEIS

    def _on_kick(self, msg: Message) -> None:
        if self._fold(msg.param(1)) == self._fold(self.nick):
            self._join_failed(msg.param(0), f"kicked by {msg.nick}: {msg.param(2)}")

    def _on_part(self, msg: Message) -> None:
        channel = self.channels.get(self._fold(msg.param(0)))
        if channel and not channel.paused_until and self._fold(msg.nick) == self._fold(self.nick):
            self._join_failed(msg.param(0), "parted")

    def _on_404(self, msg: Message) -> None:  # ERR_CANNOTSENDTOCHAN
        folded = self._fold(msg.param(1))
        self._refused[folded] = self._refused.get(folded, 0) + 1
        channel = self.channels.get(folded)
        if channel is not None:
            self._pause(channel, f"cannot send: {msg.param(-1)}")

    def _on_privmsg(self, msg: Message) -> None:
        target, text = msg.param(0), msg.param(-1)
        if not text.startswith("!") or self.on_command is None:
            return  # CTCP, chatter: nothing from IRC is executed
        to_us = self._fold(target) == self._fold(self.nick)
        if not to_us and self._fold(target) not in self.channels:
            return
        reply_to = msg.nick if to_us else target
        budget = protocol.MAX_LINE_BYTES - protocol.relay_overhead(
            self.hostmask, reply_to, "NOTICE"
        )
        for reply in self.on_command(target, msg.nick, text):
            if len(self._control) < 20:  # a bounded answer to any number of questions
                text = cut(sanitize(reply), budget)[0]
                self._control.append(format_line("NOTICE", reply_to, text))
        self._wake.set()

    # -- channel faults --------------------------------------------------------------

    def _join_failed(self, name: str, reason: str) -> None:
        channel = self.channels.get(self._fold(name))
        if channel is None:
            return
        if channel.protect:
            self._report(channel, False, f"the relay cannot join {channel.name}: {reason}")
        channel.joined = False
        channel.current = None
        self._pause(channel, reason)

    def _pause(self, channel: Channel, reason: str) -> None:
        delay = self._backoff(channel.failures)
        channel.failures += 1
        channel.paused_until = time.monotonic() + delay
        log.warning("irc: %s: %s; trying again in %.1f s", channel.name, reason, delay)
        if channel.joined:  # can no longer send, but still in it: rejoin does nothing
            channel.joined = False
            self._send(format_line("PART", channel.name, "cannot send"))

    # -- keeping a restricted room's channel closed ------------------------------------

    def _ask_modes(self, channel: Channel) -> None:
        channel.current = None
        self._control.append(format_line("MODE", channel.name))  # → RPL_CHANNELMODEIS
        self._wake.set()

    def _changes(self, modes: str, args: list[str]) -> list[tuple[bool, str, str]]:
        return protocol.mode_changes(
            modes, args, self.isupport.get("CHANMODES"), self.isupport.get("PREFIX")
        )

    def _on_324(self, msg: Message) -> None:  # RPL_CHANNELMODEIS
        channel = self.channels.get(self._fold(msg.param(1)))
        if channel is None or not channel.protect:
            return
        channel.current = {m: arg for _, m, arg in self._changes(msg.param(2), msg.params[3:])}
        if self._is_protected(channel):
            self._report(channel, True, self._note(channel))
            return
        known = self.isupport.get("CHANMODES")
        lacking = [m for m in channel.modes if known is not None and m not in known]
        if lacking:
            self._report(channel, False, f"the server has no channel mode +{''.join(lacking)}")
        # Setting the key again changes nothing; replacing another key needs it removed.
        old = channel.current.get("k")
        removes, adds, args = "", "", []
        if old is not None and old != channel.key:
            removes, args = "k", [old]
        if old != channel.key:
            adds, args = "k", [*args, channel.key]
        adds += "".join(m for m in channel.modes if m not in channel.current and m not in lacking)
        change = (f"-{removes}" if removes else "") + (f"+{adds}" if adds else "")
        if change:
            self._control.append(format_line("MODE", channel.name, change, *args))
            self._wake.set()

    def _channel_mode(self, channel: Channel, by: str, modes: str, args: list[str]) -> None:
        if channel.current is None:
            return  # not asked yet: RPL_CHANNELMODEIS will tell the whole state
        for adding, mode, arg in self._changes(modes, args):
            if adding:
                channel.current[mode] = arg
            else:
                channel.current.pop(mode, None)
        if not channel.protect:
            return
        if self._is_protected(channel):
            self._report(channel, True, self._note(channel))
        elif channel.reported == (True, self._note(channel)) and not self._is_me(by):
            self._report(channel, False, f"{by} changed the channel's modes ({modes})")
            self._ask_modes(channel)  # and set them again

    def _is_me(self, nick: str) -> bool:
        return self._fold(nick) == self._fold(self.nick)

    @staticmethod
    def _note(channel: Channel) -> str:
        """What a protected channel asks of those who join, beyond the key."""
        if "R" in channel.modes:
            return "registered users only (+R): log in to your account on the network first"
        return ""

    def _is_protected(self, channel: Channel) -> bool:
        current = channel.current or {}
        return current.get("k") == channel.key and all(m in current for m in channel.modes)

    def _on_482(self, msg: Message) -> None:  # ERR_CHANOPRIVSNEEDED
        channel = self.channels.get(self._fold(msg.param(1)))
        if channel is not None and channel.protect:
            self._report(
                channel,
                False,
                f"the relay is not a channel operator of {channel.name}, so it cannot set "
                "the key: the channel existed before it joined (with other operators, or "
                "persistent in the server's config); give the relay +o, channel services "
                "access or IRC operator rights (irc.networks.*.oper_name), or use a channel "
                "nobody holds",
            )

    def _on_472(self, msg: Message) -> None:  # ERR_UNKNOWNMODE: which channel is not said
        for channel in self.channels.values():
            if channel.protect and channel.joined and not self._is_protected(channel):
                self._report(channel, False, f"the server has no channel mode +{msg.param(1)}")

    def _on_467(self, msg: Message) -> None:  # ERR_KEYSET
        channel = self.channels.get(self._fold(msg.param(1)))
        if channel is not None and channel.protect:
            self._report(channel, False, f"{channel.name} already has another key")

    def _report(self, channel: Channel, protected: bool, detail: str) -> None:
        if channel.reported == (protected, detail):
            return
        channel.reported = (protected, detail)
        if protected:
            log.info("irc: %s is protected: key set (+k%s)", channel.name, channel.modes)
        else:
            log.warning("irc: %s of a restricted room is NOT protected: %s", channel.name, detail)
        if self.on_protection is not None:
            self.on_protection(channel.name, protected, detail)

    def _exempt(self, exempt: bool) -> None:
        """Send at ``lines_per_second_exempt`` while the server exempts us."""
        if exempt == self.exempt:
            return
        self.exempt = exempt
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

    # -- sizes -----------------------------------------------------------------------

    def _set_hostmask(self, mask: str) -> None:
        self.hostmask = mask
        for queue in self.queues:
            queue.budget = self._budget(queue.target)

    def _budget(self, target: str) -> int:
        return protocol.MAX_LINE_BYTES - protocol.relay_overhead(self.hostmask, target)

    def _fold(self, name: str) -> str:
        return protocol.irc_lower(name, self.isupport.get("CASEMAPPING") or "rfc1459")
