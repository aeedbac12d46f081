"""Registration: CAP negotiation, SASL PLAIN, the nick, ISUPPORT, who the server says we are.

Pure protocol state, no I/O and no clock: ``Session`` (state.py) feeds it parsed lines
and it puts the lines to send into the shared ``Outbox``.

    CAP LS 302 / PASS / NICK / USER           hello()
    ← CAP * LS :sasl server-time …            → CAP REQ :server-time message-tags sasl
    ← CAP * ACK :… sasl                       → AUTHENTICATE PLAIN
    ← AUTHENTICATE +                          → AUTHENTICATE <base64>
    ← 903 (RPL_SASLSUCCESS)                   → CAP END
    ← 001, 004, 005 …, 376 (or 422)           → MODE +B (ISUPPORT BOT), OPER, USERHOST

Nicks the server refuses before registration (432, 433, 436, 437) are replaced by one
it takes, within its NICKLEN (kept across reconnects), with a warning saying so.
"""

from __future__ import annotations

import logging
import random

from bots.irc import protocol
from bots.irc.events import Exempt, IrcError, Outbox, Registered, SaslError
from bots.irc.identifiers import Casemapping, Identifier
from bots.irc.numerics import Command
from bots.irc.protocol import Message, format_line
from plenary.settings import IrcNetworkSettings

log = logging.getLogger(__name__)

WANTED_CAPS = ("server-time", "message-tags")
MAX_NICK_TRIES = 10


class Registration:
    def __init__(self, settings: IrcNetworkSettings, rng: random.Random, out: Outbox) -> None:
        self.settings = settings
        self.rng = rng
        self.out = out
        self.isupport: dict[str, str | None] = {}  # kept across reconnects
        self.nicklen: int | None = None  # the server's NICKLEN, kept across reconnects
        self.nick = settings.nick
        self.hostmask = protocol.worst_case_hostmask(settings.nick, settings.username)
        self.caps: set[str] = set()
        self.user_modes = ""  # our modes as the server reports them, e.g. "iB"
        self.exempt = False  # the server exempts us from flood limits (ngircd: +F)
        self.registered = False
        self._cap_ls: dict[str, str] = {}
        self._nick_tries = 0
        self._nick_base = ""
        self._server_user_modes = ""  # RPL_MYINFO's user modes

    @property
    def casemapping(self) -> Casemapping:
        return Casemapping.of(self.isupport.get("CASEMAPPING"))

    def ident(self, name: str) -> Identifier:
        """``name`` compared the way this server compares names."""
        return Identifier(name, self.casemapping)

    def is_me(self, nick: str) -> bool:
        return self.ident(nick) == self.nick

    def reset(self) -> None:
        """The connection is gone: what the next one must learn again."""
        self.caps.clear()
        self.user_modes = ""
        self._cap_ls.clear()
        self.registered = False
        self.nick = protocol.valid_nick(self.settings.nick, self.nicklen or 512)
        self._set_exempt(False)
        self.hostmask = protocol.worst_case_hostmask(self.nick, self.settings.username)
        self._nick_tries = 0
        self._nick_base = ""
        self._server_user_modes = ""

    def hello(self) -> None:
        s = self.settings
        self.out.send(format_line(Command.CAP, "LS", "302"))
        if s.password:
            self.out.send(format_line(Command.PASS, s.password))
        self.out.send(format_line(Command.NICK, self.nick))
        self.out.send(format_line(Command.USER, s.username, "0", "*", s.realname))

    # -- capabilities and SASL ---------------------------------------------------------

    def on_cap(self, msg: Message) -> None:
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
                self.out.send(format_line(Command.CAP, "REQ", " ".join(wanted)))
            else:
                self.out.send(format_line(Command.CAP, "END"))
        elif sub == "ACK":
            acked = set(protocol.parse_caps(msg.param(-1)))
            self.caps |= acked
            if "sasl" in acked:
                self.out.send(format_line(Command.AUTHENTICATE, "PLAIN"))
            else:
                self.out.send(format_line(Command.CAP, "END"))
        elif sub == "NAK":
            if self.settings.sasl_username:
                raise SaslError(f"the server refused capabilities {msg.param(-1)!r}")
            self.out.send(format_line(Command.CAP, "END"))

    def on_authenticate(self, msg: Message) -> None:
        if msg.param(0) == "+":
            s = self.settings
            for chunk in protocol.sasl_plain(s.sasl_username, s.sasl_password):
                self.out.send(format_line(Command.AUTHENTICATE, chunk))

    def on_sasl_success(self, msg: Message) -> None:
        self.out.send(format_line(Command.CAP, "END"))

    def on_sasl_failed(self, msg: Message) -> None:
        raise SaslError(f"SASL authentication failed ({msg.command}): {msg.param(-1)}")

    # -- what the server tells about itself and us ---------------------------------------

    def on_welcome(self, msg: Message) -> None:
        self.nick = msg.param(0, self.nick)
        mask = protocol.hostmask_in(msg.param(-1))
        self.hostmask = mask or protocol.worst_case_hostmask(self.nick, self.settings.username)

    def on_myinfo(self, msg: Message) -> None:
        self._server_user_modes = msg.param(3)

    def on_isupport(self, msg: Message) -> None:
        self.isupport.update(protocol.parse_isupport(msg.params[1:-1]))
        nicklen = self.isupport.get("NICKLEN")
        if nicklen and nicklen.isdigit() and int(nicklen) > 0:
            self.nicklen = int(nicklen)

    def on_end_of_motd(self, msg: Message) -> bool:
        """Registered: ask for bot mode and OPER, learn our host. False if it was already."""
        if self.registered:
            return False
        self.registered = True
        self.out.emit(Registered(self.nick))
        bot_mode = self.isupport.get("BOT")
        if bot_mode:
            self.out.send(format_line(Command.MODE, self.nick, "+" + bot_mode))
        s = self.settings
        if s.oper_name:  # before any JOIN: the server answers in order
            self.out.send(format_line(Command.OPER, s.oper_name, s.oper_password))
        self.out.send(format_line(Command.USERHOST, self.nick))
        return True

    def on_youre_oper(self, msg: Message) -> None:
        log.info("irc: the relay is an IRC operator on %s", self.settings.host)
        if "F" in self._server_user_modes:  # ngircd: relaxed flood protection, opers only
            self.out.send(format_line(Command.MODE, self.nick, "+F"))

    def on_oper_refused(self, msg: Message) -> None:
        if self.registered:  # before registration it is the server password's
            log.warning("irc: OPER refused (%s): %s", msg.command, msg.param(-1))

    def on_userhost(self, msg: Message) -> None:
        for nick, mask in protocol.parse_userhost(msg.param(-1)).items():
            if self.is_me(nick):
                self.hostmask = f"{self.nick}!{mask}"

    def on_user_mode(self, msg: Message) -> None:
        """MODE on our nick, or RPL_UMODEIS."""
        if not self.is_me(msg.param(0)):
            return
        adding = True
        for ch in "".join(msg.params[1:2]):
            if ch in "+-":
                adding = ch == "+"
            elif adding and ch not in self.user_modes:
                self.user_modes += ch
            elif not adding:
                self.user_modes = self.user_modes.replace(ch, "")
        self._set_exempt("F" in self.user_modes and "F" in self._server_user_modes)

    def _set_exempt(self, exempt: bool) -> None:
        if exempt != self.exempt:
            self.exempt = exempt
            self.out.emit(Exempt(exempt))

    # -- the nick ------------------------------------------------------------------------

    def on_nick(self, msg: Message) -> None:
        if self.is_me(msg.nick):
            self.nick = msg.param(0)
            self.hostmask = self.nick + "!" + self.hostmask.split("!", 1)[-1]

    def on_own_join(self, msg: Message) -> None:
        if msg.source and "@" in msg.source:
            self.hostmask = msg.source

    def on_erroneous_nick(self, msg: Message) -> None:
        if self.registered:
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

    def on_nick_in_use(self, msg: Message) -> None:
        if not self.registered:
            wanted = self.nick
            nick = self._another_nick(wanted)
            self._try_nick(nick, f"has the nick {wanted!r} in use ({msg.command})")

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
        if self._nick_tries > MAX_NICK_TRIES:
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
        self.out.send(format_line(Command.NICK, nick))
