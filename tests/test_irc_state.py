"""The relay's IRC protocol state without a socket: literal server lines in, lines out.

What the real-server tests (test_irc_servers, test_irc_restricted, test_irc_services)
show end to end, step by step here: registration with CAP and SASL, nicks the server
refuses, casemapping, delivery confirmation, refused lines, channel keys, commands and
the keepalive.
"""

from __future__ import annotations

import base64
import random
from typing import Any

import pytest

from bots.irc.events import (
    CommandAsked,
    Delivered,
    Exempt,
    IrcError,
    Protection,
    Registered,
    SaslError,
)
from bots.irc.identifiers import Casemapping, Identifier, fold
from bots.irc.numerics import Numeric
from bots.irc.protocol import parse
from bots.irc.state import KEEPALIVE, Session
from plenary.settings import IrcNetworkSettings


def session(**overrides: Any) -> Session:
    values: dict[str, Any] = {"host": "irc.test", "nick": "relay", "tls": False}
    values.update(overrides)
    return Session(IrcNetworkSettings(**values), random.Random(7))


def feed(s: Session, *lines: str, now: float = 0.0) -> list[str]:
    """Every line the session writes at once in answer to ``lines``."""
    out: list[str] = []
    for line in lines:
        out += s.handle(parse(line), now)
    return out


def register(s: Session, *isupport: str) -> list[str]:
    s.hello(0.0)
    tokens = " ".join(isupport or ("CHANMODES=b,k,l,imnpst", "PREFIX=(ov)@+"))
    nick = s.me.nick
    return feed(
        s,
        ":srv CAP * LS :multi-prefix",
        f":srv 001 {nick} :Welcome to the network {nick}!~relay@host.example",
        f":srv 004 {nick} srv ngircd-27 abBcCFiIoqrRswx beIiklmMnoOPqQrRstvVz",
        f":srv 005 {nick} {tokens} :are supported by this server",
        f":srv 376 {nick} :End of MOTD",
    )


# -- identifiers ---------------------------------------------------------------------------


def test_casemappings_fold_their_own_pairs() -> None:
    assert fold("Relay[]\\^", "rfc1459") == "relay{}|~"
    assert fold("Relay[]\\^", "strict-rfc1459") == "relay{}|^"
    assert fold("Relay[]\\^", "ascii") == "relay[]\\^"
    assert fold("ÄRelay", "ascii") == "Ärelay"  # only ASCII letters fold
    assert Casemapping.of(None) is Casemapping.RFC1459  # not announced: the RFC's
    assert Casemapping.of("rfc7613") is Casemapping.ASCII


def test_identifier_compares_and_hashes_as_the_server_does() -> None:
    nick = Identifier("Relay[1]")
    assert nick == "relay{1}" and nick == "RELAY[1]" and nick != "relay[2]"
    assert str(nick) == "Relay[1]"  # written as given
    assert Identifier("a^", "strict-rfc1459") != "a~"
    assert Identifier("a^", "rfc1459") == "a~"
    assert nick.under("ascii") != "relay{1}"
    table = {Identifier("#Room[1]"): "x"}
    assert table["#room{1}"] == "x" and Identifier("#ROOM[1]") in table
    assert repr(nick) == "Identifier('Relay[1]', 'rfc1459')"


# -- registration --------------------------------------------------------------------------


def test_registration_with_caps_sasl_and_bot_mode() -> None:
    s = session(sasl_username="relay", sasl_password="secret")
    hello = s.hello(0.0)
    assert hello == ["CAP LS 302", "NICK relay", "USER plenary 0 * :Plenary caption relay"]
    assert feed(s, ":srv CAP * LS * :sasl=PLAIN server-time") == []  # more to come
    assert feed(s, ":srv CAP * LS :message-tags") == ["CAP REQ :server-time message-tags sasl"]
    assert feed(s, ":srv CAP relay ACK :server-time message-tags sasl") == ["AUTHENTICATE PLAIN"]
    (chunk,) = feed(s, "AUTHENTICATE +")
    assert base64.b64decode(chunk.split()[1]) == b"\0relay\0secret"
    assert feed(s, ":srv 903 relay :SASL authentication successful") == ["CAP END"]
    assert s.me.caps == {"server-time", "message-tags", "sasl"}
    s.add_room("talk", "#talk")
    lines = feed(
        s,
        ":srv 001 relay :Welcome relay!~relay@cloaked.irc",
        ":srv 005 relay BOT=B NICKLEN=30 :are supported",
        ":srv 376 relay :End of MOTD",
    )
    assert lines == ["MODE relay +B", "USERHOST relay", "JOIN #talk"]
    assert s.out.take_events() == [Registered("relay")]
    assert s.me.hostmask == "relay!~relay@cloaked.irc" and s.me.nicklen == 30
    feed(s, ":srv 302 relay :RELAY=+~relay@real.host")  # names compared as the server does
    assert s.me.hostmask == "relay!~relay@real.host"
    assert feed(s, ":srv 422 relay :no MOTD") == []  # registered once


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (":srv 904 relay :SASL authentication failed", "904"),
        (":srv 908 relay EXTERNAL :are available SASL mechanisms", "908"),
        (":srv CAP relay NAK :sasl", "refused capabilities"),
        (":srv CAP * LS :server-time", "does not offer it"),
    ],
)
def test_sasl_refusals_end_the_client(line: str, why: str) -> None:
    s = session(sasl_username="relay", sasl_password="wrong")
    s.hello(0.0)
    with pytest.raises(SaslError, match=why):
        feed(s, line)


def test_refused_nicks_are_replaced_within_nicklen() -> None:
    s = session(nick="plenarybot")
    s.hello(0.0)
    assert feed(s, ":srv 432 * plenarybot :Nickname too long, max. 9 characters") == [
        "NICK plenarybo"
    ]
    assert feed(s, ":srv 433 * plenarybo :Nickname already in use") == ["NICK plenaryb_"]
    assert s.me.nicklen == 9
    feed(s, ":srv 001 plenaryb_ :Welcome", ":srv 376 plenaryb_ :End")
    assert feed(s, ":srv 433 plenaryb_ other :in use") == []  # registered: nothing to do
    s.reset()
    assert s.me.nick == "plenarybo"  # NICKLEN kept across reconnects


def test_oper_and_mode_f_raise_the_line_rate() -> None:
    s = session(oper_name="relayop", oper_password="pw")
    assert register(s)[-2:] == ["OPER relayop pw", "USERHOST relay"]
    s.out.take_events()
    assert feed(s, ":srv 381 relay :You are now an IRC Operator") == ["MODE relay +F"]
    feed(s, ":relay!~relay@host MODE relay :+oF")
    assert s.me.user_modes == "oF" and s.out.take_events() == [Exempt(True)]
    s.reset()
    assert s.out.take_events() == [Exempt(False)]


# -- channels and casemapping --------------------------------------------------------------


def test_casemapping_decides_which_names_are_ours() -> None:
    s = session(nick="Relay[1]")
    s.add_room("talk", "#Talk[a]")
    s.hello(0.0)
    feed(s, ":srv 001 Relay[1] :Welcome", ":srv 376 Relay[1] :End")
    # rfc1459 (the default): [ and { are one letter.
    feed(s, ":relay{1}!~r@h JOIN #talk{A}")
    channel = s.channels.get("#TALK[A]")
    assert channel is not None and channel.joined
    feed(s, ":op!o@h KICK #TALK{a} relay{1} :bye", now=10.0)
    assert channel is s.channels.by_name["#talk{a}"]
    assert not channel.joined and channel.paused_until > 10.0

    ascii_session = session(nick="Relay[1]")
    ascii_session.add_room("talk", "#Talk[a]")
    register(ascii_session, "CASEMAPPING=ascii")
    feed(ascii_session, ":relay{1}!~r@h JOIN #talk{a}")  # another nick, another channel
    assert not any(c.joined for c in ascii_session.channels.by_name.values())
    feed(ascii_session, ":relay[1]!~r@h JOIN #TALK[A]")
    assert ascii_session.channels.by_name["#talk[a]"].joined
    assert "#talk{a}" not in ascii_session.channels.by_name


# -- delivery ------------------------------------------------------------------------------


def joined(s: Session, channel: str = "#talk") -> None:
    feed(s, f":relay!~relay@host JOIN {channel}")
    s.out.take_events()


def test_a_line_counts_as_delivered_when_the_ping_behind_it_is_answered() -> None:
    s = session()
    queue = s.add_room("talk", "#talk")
    register(s)
    joined(s)
    queue.push("Alice", "hello", 41)
    assert s.busy(1.0)
    assert s.next_line(1.0, tokens=4.0) == ("PRIVMSG #talk :<Alice> hello", True)
    assert not s.busy(1.0) and s.confirm_due(busy=False)
    ping = s.confirm()
    assert ping == "PING plenary-1" and not s.confirm_due(busy=False)
    assert s.out.take_events() == []
    feed(s, ":srv PONG srv :plenary-2")  # not ours
    assert s.out.take_events() == []
    feed(s, ":srv PONG srv :plenary-1")
    assert s.out.take_events() == [Delivered("talk", 41)]
    assert s.delivery.backlog == 0


def test_refused_lines_are_sent_again_and_not_counted() -> None:
    s = session()
    queue = s.add_room("talk", "#talk")
    register(s)
    joined(s)
    queue.push("Alice", "first", 1)
    s.next_line(0.0, 4.0)
    lines = feed(s, ":srv 404 relay #TALK :Cannot send to channel", now=5.0)
    assert lines == ["PART #talk :cannot send"]
    feed(s, f":srv PONG srv :{s.confirm().split()[1]}")
    assert s.out.take_events() == []  # refused: not delivered
    assert s.delivery.backlog == 1 and not s.busy(5.0)  # paused
    paused = s.channels.by_name["#talk"].paused_until
    assert s.tick(paused + 0.1) == ["JOIN #talk"]


def test_lines_unconfirmed_when_the_connection_drops_are_sent_again() -> None:
    s = session()
    queue = s.add_room("talk", "#talk")
    register(s)
    joined(s)
    queue.push("Alice", "one", 1)
    assert s.next_line(0.0, 4.0) is not None
    s.reset()
    assert s.delivery.backlog == 1
    register(s)
    joined(s)
    assert s.next_line(0.0, 4.0) == ("PRIVMSG #talk :<Alice> one", True)


# -- a restricted room's channel -----------------------------------------------------------


def test_key_is_set_reported_and_set_again_when_removed() -> None:
    s = session()
    queue = s.add_room("dev", "#dev")
    s.protect("#dev", "Sesame1", restricted=True)
    assert register(s)[-1] == "JOIN #dev Sesame1"
    joined(s, "#dev")
    queue.push("Alice", "secret", 1)
    assert s.next_line(0.0, 4.0) == ("MODE #dev", False)  # what is set now?
    assert not s.busy(0.0)  # no caption before the key is known to be set
    feed(s, ":srv 324 relay #dev +nt")
    assert s.next_line(0.0, 4.0) == ("MODE #dev +k Sesame1", False)
    feed(s, ":relay!~relay@host MODE #dev +k Sesame1")
    assert s.out.take_events() == [Protection("#dev", True, "")]
    assert s.next_line(0.0, 4.0) == ("PRIVMSG #dev :<Alice> secret", True)
    feed(s, ":op!o@h MODE #dev -k Sesame1")
    assert s.out.take_events() == [Protection("#dev", False, "op changed the channel's modes (-k)")]
    assert s.next_line(0.0, 4.0) == ("MODE #dev", False)
    feed(s, ":srv 482 relay #dev :You're not channel operator")
    (event,) = s.out.take_events()
    assert isinstance(event, Protection) and "not a channel operator" in event.detail


# -- commands and keepalive ----------------------------------------------------------------


def test_commands_become_events_and_answers_notices() -> None:
    s = session()
    s.add_room("talk", "#Talk")
    register(s)
    joined(s, "#talk")
    feed(s, ":ann!a@h PRIVMSG #TALK :!transcript", ":ann!a@h PRIVMSG #talk :hello")
    feed(s, ":ann!a@h PRIVMSG #elsewhere :!transcript", ":ann!a@h PRIVMSG RELAY :!help")
    asked = s.out.take_events()
    assert asked == [
        CommandAsked("#TALK", "ann", "!transcript", "#TALK", ("talk",)),
        CommandAsked("RELAY", "ann", "!help", "ann", ()),
    ]
    assert isinstance(asked[0], CommandAsked)
    s.answer(asked[0], ["Full transcript of Talk:\r\nQUIT x"])
    assert s.next_line(0.0, 4.0) == ("NOTICE #TALK :Full transcript of Talk: QUIT x", False)


def test_keepalive_pings_when_quiet_and_gives_up_without_an_answer() -> None:
    s = session(ping_interval=60.0, ping_timeout=30.0)
    register(s)
    s.heard(100.0)
    assert s.tick(150.0) == []
    assert s.tick(161.0) == [f"PING {KEEPALIVE}"]
    assert s.tick(170.0) == []  # one at a time
    feed(s, f":srv PONG srv :{KEEPALIVE}")
    s.heard(180.0)
    assert s.tick(241.0) == [f"PING {KEEPALIVE}"]
    with pytest.raises(IrcError, match="no reply to PING"):
        s.tick(272.0)
    assert feed(s, "PING :abc") == ["PONG abc"]
    with pytest.raises(IrcError, match="ERROR: Closing link"):
        feed(s, "ERROR :Closing link")


def test_every_handled_numeric_is_named() -> None:
    handled = {command for command in session().dispatch if command.isdigit()}
    assert handled <= {n.value for n in Numeric}
    assert Numeric("433") is Numeric.ERR_NICKNAMEINUSE
