"""The IRC commands and numeric replies the relay handles (RFC 1459/2812, IRCv3 SASL).

Names follow the RFCs and modern.ircdocs.horse; both enums are ``StrEnum``, so a
member equals (and hashes like) the string on the wire and a dispatch table keyed by
them answers ``table.get(msg.command)``:

    Numeric.RPL_WELCOME == "001"  # True
    Numeric("433") is Numeric.ERR_NICKNAMEINUSE  # True
"""

from __future__ import annotations

from enum import StrEnum


class Command(StrEnum):
    """Commands the relay sends or answers."""

    AUTHENTICATE = "AUTHENTICATE"
    CAP = "CAP"
    ERROR = "ERROR"
    JOIN = "JOIN"
    KICK = "KICK"
    MODE = "MODE"
    NICK = "NICK"
    NOTICE = "NOTICE"
    OPER = "OPER"
    PART = "PART"
    PASS = "PASS"  # noqa: S105 (the command, not a password)
    PING = "PING"
    PONG = "PONG"
    PRIVMSG = "PRIVMSG"
    QUIT = "QUIT"
    USER = "USER"
    USERHOST = "USERHOST"


class Numeric(StrEnum):
    """Numeric replies the relay acts on."""

    RPL_WELCOME = "001"
    RPL_MYINFO = "004"  # server name, version, user modes, channel modes
    RPL_ISUPPORT = "005"
    RPL_UMODEIS = "221"
    RPL_USERHOST = "302"
    RPL_CHANNELMODEIS = "324"
    RPL_ENDOFMOTD = "376"
    RPL_YOUREOPER = "381"
    ERR_NOSUCHCHANNEL = "403"
    ERR_CANNOTSENDTOCHAN = "404"
    ERR_TOOMANYCHANNELS = "405"
    ERR_NOMOTD = "422"
    ERR_ERRONEUSNICKNAME = "432"
    ERR_NICKNAMEINUSE = "433"
    ERR_NICKCOLLISION = "436"
    ERR_UNAVAILRESOURCE = "437"
    ERR_PASSWDMISMATCH = "464"
    ERR_KEYSET = "467"
    ERR_CHANNELISFULL = "471"
    ERR_UNKNOWNMODE = "472"
    ERR_INVITEONLYCHAN = "473"
    ERR_BANNEDFROMCHAN = "474"
    ERR_BADCHANNELKEY = "475"
    ERR_BADCHANMASK = "476"
    ERR_NEEDREGGEDNICK = "477"  # also ERR_NOCHANMODES; either way the JOIN failed
    ERR_CHANOPRIVSNEEDED = "482"
    ERR_SECUREONLYCHAN = "489"
    ERR_NOOPERHOST = "491"
    RPL_LOGGEDIN = "900"
    RPL_LOGGEDOUT = "901"
    ERR_NICKLOCKED = "902"
    RPL_SASLSUCCESS = "903"
    ERR_SASLFAIL = "904"
    ERR_SASLTOOLONG = "905"
    ERR_SASLABORTED = "906"
    ERR_SASLALREADY = "907"
    RPL_SASLMECHS = "908"


# Replies to a JOIN that did not happen: ``<nick> <channel> :why``.
JOIN_REFUSED = frozenset(
    {
        Numeric.ERR_NOSUCHCHANNEL,
        Numeric.ERR_TOOMANYCHANNELS,
        Numeric.ERR_CHANNELISFULL,
        Numeric.ERR_INVITEONLYCHAN,
        Numeric.ERR_BANNEDFROMCHAN,
        Numeric.ERR_BADCHANNELKEY,
        Numeric.ERR_BADCHANMASK,
        Numeric.ERR_NEEDREGGEDNICK,
        Numeric.ERR_SECUREONLYCHAN,
    }
)

# SASL ended without logging in (RPL_SASLMECHS: our mechanism is not offered).
SASL_FAILED = frozenset(
    {
        Numeric.ERR_NICKLOCKED,
        Numeric.ERR_SASLFAIL,
        Numeric.ERR_SASLTOOLONG,
        Numeric.ERR_SASLABORTED,
        Numeric.RPL_SASLMECHS,
    }
)
