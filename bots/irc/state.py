"""The protocol state of one IRC connection, without I/O: fed parsed lines, it says what
to send and what happened.

    session = Session(settings, random.Random())
    queue = session.add_room("keynote", "#keynote")
    session.hello()                                   # CAP LS 302, NICK, USER
    lines = session.handle(parse(":srv 001 relay :Welcome"), now=0.0)
    session.out.take_events()                         # [Registered(...), Delivered(...)…]

It is made of three parts sharing one ``Outbox`` (events.py): ``Registration``
(negotiation.py: CAP, SASL, the nick, ISUPPORT), ``Channels`` (channels.py: joins,
pauses, keys of restricted rooms) and ``Delivery`` (delivery.py: which line goes next,
which are confirmed). Incoming lines reach them through one dispatch table keyed by
command or numeric (numerics.py). ``client.py`` owns the socket, the clock and the
flood limiter.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from bots.irc.channels import Channels
from bots.irc.delivery import Delivery
from bots.irc.events import CommandAsked, IrcError, Outbox
from bots.irc.flood import MergeQueue
from bots.irc.identifiers import Identifier
from bots.irc.lines import cut, sanitize
from bots.irc.negotiation import Registration
from bots.irc.numerics import JOIN_REFUSED, SASL_FAILED, Command, Numeric
from bots.irc.protocol import MAX_LINE_BYTES, Message, format_line, relay_overhead
from plenary.settings import IrcNetworkSettings

KEEPALIVE = "plenary-keepalive"
MAX_ANSWERS = 20  # paced lines waiting: a bounded answer to any number of questions

Handler = Callable[[Message, float], None]


class Session:
    def __init__(self, settings: IrcNetworkSettings, rng: random.Random) -> None:
        self.settings = settings
        self.out = Outbox()
        self.me = Registration(settings, rng, self.out)
        self.channels = Channels(settings, rng, self.me, self.out)
        self.delivery = Delivery(settings, self.channels, self.me, self.out)
        self.connected = False
        self._last_recv = 0.0
        self._keepalive_sent = 0.0
        me, ch = self.me, self.channels
        table: dict[str, Handler] = {
            Command.PING: self._on_ping,
            Command.PONG: self._on_pong,
            Command.ERROR: self._on_error,
            Command.CAP: _now_free(me.on_cap),
            Command.AUTHENTICATE: _now_free(me.on_authenticate),
            Command.NICK: _now_free(me.on_nick),
            Command.JOIN: self._on_join,
            Command.PART: ch.on_part,
            Command.KICK: ch.on_kick,
            Command.MODE: self._on_mode,
            Command.PRIVMSG: self._on_privmsg,
            Numeric.RPL_WELCOME: _now_free(me.on_welcome),
            Numeric.RPL_MYINFO: _now_free(me.on_myinfo),
            Numeric.RPL_ISUPPORT: self._on_isupport,
            Numeric.RPL_UMODEIS: self._on_mode,
            Numeric.RPL_USERHOST: _now_free(me.on_userhost),
            Numeric.RPL_CHANNELMODEIS: _now_free(ch.on_channel_modes),
            Numeric.RPL_ENDOFMOTD: self._on_registered,
            Numeric.ERR_NOMOTD: self._on_registered,
            Numeric.RPL_YOUREOPER: _now_free(me.on_youre_oper),
            Numeric.ERR_PASSWDMISMATCH: _now_free(me.on_oper_refused),
            Numeric.ERR_NOOPERHOST: _now_free(me.on_oper_refused),
            Numeric.ERR_CANNOTSENDTOCHAN: self._on_cannot_send,
            Numeric.ERR_ERRONEUSNICKNAME: _now_free(me.on_erroneous_nick),
            Numeric.ERR_NICKNAMEINUSE: _now_free(me.on_nick_in_use),
            Numeric.ERR_NICKCOLLISION: _now_free(me.on_nick_in_use),
            Numeric.ERR_UNAVAILRESOURCE: _now_free(me.on_nick_in_use),
            Numeric.ERR_KEYSET: _now_free(ch.on_key_set),
            Numeric.ERR_UNKNOWNMODE: _now_free(ch.on_unknown_mode),
            Numeric.ERR_CHANOPRIVSNEEDED: _now_free(ch.on_not_operator),
            Numeric.RPL_SASLSUCCESS: _now_free(me.on_sasl_success),
        }
        table.update({code: ch.on_join_refused for code in JOIN_REFUSED})
        table.update({code: _now_free(me.on_sasl_failed) for code in SASL_FAILED})
        self.dispatch = table

    # -- set up by the relay -----------------------------------------------------------

    def add_room(
        self, room: str, channel: str, *, key: str = "", transcript_url: str = ""
    ) -> MergeQueue:
        self.channels.add(channel, key)
        return self.delivery.add_queue(room, channel, transcript_url)

    def protect(self, channel: str, key: str, *, restricted: bool, modes: str = "") -> None:
        self.channels.protect(
            channel, key, restricted=restricted, modes=modes, connected=self.connected
        )

    def ident(self, name: str) -> Identifier:
        return self.me.ident(name)

    # -- one connection ----------------------------------------------------------------

    def hello(self, now: float) -> list[str]:
        """A new connection: the registration lines."""
        self.connected = True
        self._last_recv = now
        self.me.hello()
        return self.out.take_lines()

    def reset(self) -> None:
        """The connection is gone; what the next one needs is kept (queues, NICKLEN,
        lines to send again). Events (Exempt) may follow."""
        self.connected = False
        self.delivery.reset()
        self.out.paced.clear()
        self.out.lines.clear()
        self.me.reset()
        self.channels.reset()
        self.delivery.update_budgets()
        self._keepalive_sent = 0.0

    def heard(self, now: float) -> None:
        """The server sent a line (any line proves the connection alive)."""
        self._last_recv = now

    def handle(self, msg: Message, now: float) -> list[str]:
        """Apply one line from the server; the lines to write now (unpaced). Raises
        IrcError (reconnect) or SaslError (give up), and LineError when an answer
        cannot be formatted."""
        handler = self.dispatch.get(msg.command)
        if handler is not None:
            handler(msg, now)
            self.delivery.update_budgets()
        return self.out.take_lines()

    def tick(self, now: float) -> list[str]:
        """Keepalive and paused channels, about every second; raises IrcError when the
        server stopped answering."""
        s = self.settings
        if self._keepalive_sent and now - self._keepalive_sent > s.ping_timeout:
            raise IrcError(f"no reply to PING for {s.ping_timeout:.0f} s")
        if not self._keepalive_sent and now - self._last_recv > s.ping_interval:
            self._keepalive_sent = now
            self.out.send(format_line(Command.PING, KEEPALIVE))
        self.channels.tick(now)
        return self.out.take_lines()

    # -- sending (client.py paces these through its flood limiter) ---------------------

    def busy(self, now: float) -> bool:
        return self.delivery.busy(now)

    def next_line(self, now: float, tokens: float) -> tuple[str, bool] | None:
        return self.delivery.next_line(now, tokens)

    def confirm_due(self, busy: bool) -> bool:
        return self.delivery.confirm_due(busy)

    def confirm(self) -> str:
        return self.delivery.confirm()

    def answer(self, asked: CommandAsked, replies: list[str]) -> None:
        """Queue ``replies`` to a command as NOTICEs, each cut to one line."""
        budget = MAX_LINE_BYTES - relay_overhead(self.me.hostmask, asked.reply_to, "NOTICE")
        for reply in replies:
            if len(self.out.paced) < MAX_ANSWERS:
                text = cut(sanitize(reply), budget)[0]
                self.out.queue(format_line(Command.NOTICE, asked.reply_to, text))
        self.out.wake = True

    # -- handlers that span the parts -------------------------------------------------

    def _on_ping(self, msg: Message, now: float) -> None:
        self.out.send(format_line(Command.PONG, msg.param(-1) or "x"))

    def _on_pong(self, msg: Message, now: float) -> None:
        echoed = msg.param(-1)
        if echoed == KEEPALIVE:
            self._keepalive_sent = 0.0
        else:
            self.delivery.on_pong(echoed)

    def _on_error(self, msg: Message, now: float) -> None:
        raise IrcError(f"server said ERROR: {msg.param(-1)}")

    def _on_isupport(self, msg: Message, now: float) -> None:
        self.me.on_isupport(msg)
        self.channels.rekey()

    def _on_registered(self, msg: Message, now: float) -> None:
        if self.me.on_end_of_motd(msg):
            self.channels.join_all()

    def _on_join(self, msg: Message, now: float) -> None:
        if self.me.is_me(msg.nick):
            self.me.on_own_join(msg)
            self.channels.on_join(msg, now)

    def _on_mode(self, msg: Message, now: float) -> None:
        if not self.channels.on_mode(msg):
            self.me.on_user_mode(msg)

    def _on_cannot_send(self, msg: Message, now: float) -> None:
        self.delivery.on_refused(msg.param(1))
        self.channels.on_cannot_send(msg, now)

    def _on_privmsg(self, msg: Message, now: float) -> None:
        target, text = msg.param(0), msg.param(-1)
        if not text.startswith("!"):
            return  # CTCP, chatter: nothing from IRC is executed
        to_us = self.me.is_me(target)
        if not to_us and self.channels.get(target) is None:
            return
        rooms = () if to_us else self.delivery.rooms_of(target)
        reply_to = msg.nick if to_us else target
        self.out.emit(CommandAsked(target, msg.nick, text, reply_to, rooms))


def _now_free(method: Callable[[Message], object]) -> Handler:
    """A handler that needs no clock, in the table's shape."""

    def handler(msg: Message, now: float) -> None:
        method(msg)

    return handler
