"""The channels of one connection: joining, losing them, and keeping restricted ones keyed.

Pure protocol state, no I/O; ``now`` is monotonic seconds passed in by the caller.

A channel the relay cannot join or send to (kick, ban, +m, a wrong key) is paused and
joined again after a backoff. A restricted room's channel (``protect``) gets its key
(+k, and modes such as +R) set whenever the relay joins it; captions wait until the
channel is known to be keyed, and every change of that is reported
(``Protection`` events): keyed, or why not (not a channel operator, a mode the server
lacks, someone else's key).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from bots.irc import protocol
from bots.irc.events import Outbox, Protection
from bots.irc.negotiation import Registration
from bots.irc.numerics import Command
from bots.irc.protocol import Message, format_line
from plenary.settings import IrcNetworkSettings

log = logging.getLogger(__name__)


def retry_delay(settings: IrcNetworkSettings, rng: random.Random, attempt: int) -> float:
    """Exponential backoff with jitter between reconnect_min and reconnect_max."""
    ceiling = min(settings.reconnect_max, settings.reconnect_min * 2 ** min(attempt, 30))
    return rng.uniform(ceiling / 2, ceiling)


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
    wanted: bool = True  # False: another relay holds the channel's lease; stay out

    def note(self) -> str:
        """What a protected channel asks of those who join, beyond the key."""
        if "R" in self.modes:
            return "registered users only (+R): log in to your account on the network first"
        return ""

    def is_protected(self) -> bool:
        current = self.current or {}
        return current.get("k") == self.key and all(m in current for m in self.modes)


class Channels:
    def __init__(
        self, settings: IrcNetworkSettings, rng: random.Random, me: Registration, out: Outbox
    ) -> None:
        self.settings = settings
        self.rng = rng
        self.me = me
        self.out = out
        self.by_name: dict[str, Channel] = {}  # by Identifier: compared as the server does
        self._casemapping = me.casemapping

    def add(self, name: str, key: str = "") -> Channel:
        return self.by_name.setdefault(self.me.ident(name), Channel(name, key))

    def get(self, name: str) -> Channel | None:
        return self.by_name.get(self.me.ident(name))

    def rekey(self) -> None:
        """Compare names under the casemapping the server announced (ISUPPORT)."""
        if self.me.casemapping != self._casemapping:
            self._casemapping = self.me.casemapping
            self.by_name = {self.me.ident(c.name): c for c in self.by_name.values()}

    def reset(self) -> None:
        for channel in self.by_name.values():
            channel.joined = False
            channel.current = None

    def sendable(self, target: str, now: float) -> bool:
        channel = self.get(target)
        if channel is None or not channel.wanted or not channel.joined:
            return False
        if now < channel.paused_until:
            return False
        # A restricted room's channel gets captions only once its key is set: where the
        # relay cannot set it, they are held back (fail closed) and the log and the room
        # page say why.
        return not channel.protect or (channel.reported is not None and channel.reported[0])

    def protect(
        self, name: str, key: str, *, restricted: bool, modes: str, connected: bool
    ) -> None:
        channel = self.get(name)
        if channel is None:
            return
        changed = (channel.key, channel.protect, channel.modes) != (key, restricted, modes)
        channel.key, channel.protect, channel.modes = key, restricted, modes
        if changed and channel.joined and restricted and connected:
            self._ask_modes(channel)

    def want(self, name: str, wanted: bool, *, registered: bool) -> None:
        """Be in ``name`` (join it now if registered) or not (part it): a relay joins a
        channel only while it holds the channel's lease (bots/irc/relay.py)."""
        channel = self.get(name)
        if channel is None or channel.wanted == wanted:
            return
        channel.wanted = wanted
        channel.failures, channel.paused_until = 0, 0.0
        if wanted and registered:
            self.join(channel)
        elif not wanted and channel.joined:
            channel.joined, channel.current = False, None
            self.out.send(format_line(Command.PART, channel.name, "another relay serves it"))

    # -- joining ---------------------------------------------------------------------

    def join(self, channel: Channel) -> None:
        if channel.key:
            self.out.send(format_line(Command.JOIN, channel.name, channel.key))
        else:
            self.out.send(format_line(Command.JOIN, channel.name))

    def join_all(self) -> None:
        for channel in self.by_name.values():
            if channel.wanted:
                self.join(channel)

    def tick(self, now: float) -> None:
        """Join again the channels whose pause is over."""
        for channel in self.by_name.values():
            if channel.joined or not channel.wanted or not channel.paused_until:
                continue
            if now >= channel.paused_until:
                channel.paused_until = 0.0
                self.join(channel)

    def on_join(self, msg: Message, now: float) -> None:
        """We joined ``msg.param(0)``."""
        channel = self.get(msg.param(0))
        if channel is not None and not channel.wanted:  # given up while joining
            self.out.send(format_line(Command.PART, channel.name, "another relay serves it"))
        elif channel is not None:
            channel.joined = True
            channel.failures = 0
            log.info("irc: joined %s", channel.name)
            if channel.protect:
                channel.reported = None  # no caption until the key is known to be set
                self._ask_modes(channel)
            self.out.wake = True

    def on_kick(self, msg: Message, now: float) -> None:
        if self.me.is_me(msg.param(1)):
            self.join_failed(msg.param(0), f"kicked by {msg.nick}: {msg.param(2)}", now)

    def on_part(self, msg: Message, now: float) -> None:
        channel = self.get(msg.param(0))
        if channel and channel.wanted and not channel.paused_until and self.me.is_me(msg.nick):
            self.join_failed(msg.param(0), "parted", now)

    def on_join_refused(self, msg: Message, now: float) -> None:
        if len(msg.params) >= 2:
            self.join_failed(msg.params[1], msg.param(-1), now)

    def on_cannot_send(self, msg: Message, now: float) -> None:
        channel = self.get(msg.param(1))
        if channel is not None:
            self.pause(channel, f"cannot send: {msg.param(-1)}", now)

    def join_failed(self, name: str, reason: str, now: float) -> None:
        channel = self.get(name)
        if channel is None:
            return
        if channel.protect:
            self._report(channel, False, f"the relay cannot join {channel.name}: {reason}")
        channel.joined = False
        channel.current = None
        self.pause(channel, reason, now)

    def pause(self, channel: Channel, reason: str, now: float) -> None:
        delay = retry_delay(self.settings, self.rng, channel.failures)
        channel.failures += 1
        channel.paused_until = now + delay
        log.warning("irc: %s: %s; trying again in %.1f s", channel.name, reason, delay)
        if channel.joined:  # can no longer send, but still in it: rejoin does nothing
            channel.joined = False
            self.out.send(format_line(Command.PART, channel.name, "cannot send"))

    # -- keeping a restricted room's channel closed ----------------------------------------

    def _ask_modes(self, channel: Channel) -> None:
        channel.current = None
        self.out.queue(format_line(Command.MODE, channel.name))  # → RPL_CHANNELMODEIS

    def _changes(self, modes: str, args: list[str]) -> list[tuple[bool, str, str]]:
        isupport = self.me.isupport
        return protocol.mode_changes(modes, args, isupport.get("CHANMODES"), isupport.get("PREFIX"))

    def on_mode(self, msg: Message) -> bool:
        """A MODE line on one of our channels; False when it is about something else."""
        channel = self.get(msg.param(0))
        if channel is None:
            return False
        if channel.current is None:
            return True  # not asked yet: RPL_CHANNELMODEIS will tell the whole state
        modes, by = msg.param(1), msg.nick
        for adding, mode, arg in self._changes(modes, msg.params[2:]):
            if adding:
                channel.current[mode] = arg
            else:
                channel.current.pop(mode, None)
        if not channel.protect:
            return True
        if channel.is_protected():
            self._report(channel, True, channel.note())
        elif channel.reported == (True, channel.note()) and not self.me.is_me(by):
            self._report(channel, False, f"{by} changed the channel's modes ({modes})")
            self._ask_modes(channel)  # and set them again
        return True

    def on_channel_modes(self, msg: Message) -> None:  # RPL_CHANNELMODEIS
        channel = self.get(msg.param(1))
        if channel is None or not channel.protect:
            return
        channel.current = {m: arg for _, m, arg in self._changes(msg.param(2), msg.params[3:])}
        if channel.is_protected():
            self._report(channel, True, channel.note())
            return
        known = self.me.isupport.get("CHANMODES")
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
            self.out.queue(format_line(Command.MODE, channel.name, change, *args))

    def on_not_operator(self, msg: Message) -> None:  # ERR_CHANOPRIVSNEEDED
        channel = self.get(msg.param(1))
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

    def on_unknown_mode(self, msg: Message) -> None:  # ERR_UNKNOWNMODE: no channel named
        for channel in self.by_name.values():
            if channel.protect and channel.joined and not channel.is_protected():
                self._report(channel, False, f"the server has no channel mode +{msg.param(1)}")

    def on_key_set(self, msg: Message) -> None:  # ERR_KEYSET
        channel = self.get(msg.param(1))
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
        self.out.emit(Protection(channel.name, protected, detail))
