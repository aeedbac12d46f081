"""Which line goes out next, and which lines are known to have reached their channel.

Pure protocol state, no I/O. A line counts as delivered when the server has answered
a PING sent after it (servers handle a client's lines in order), so lines written into
a dying connection are sent again after the reconnect instead of being lost
(``reset``). ``Delivered`` events then say up to which caption event each room may
resume. ERR_CANNOTSENDTOCHAN (404) between a line and its confirming PONG marks the
last lines to that channel as refused: they are queued again, not counted delivered.
"""

from __future__ import annotations

from bots.irc import protocol
from bots.irc.channels import Channels
from bots.irc.events import Delivered, Outbox
from bots.irc.flood import MergeQueue, OutLine
from bots.irc.identifiers import Identifier
from bots.irc.negotiation import Registration
from bots.irc.numerics import Command
from bots.irc.protocol import format_line
from plenary.settings import IrcNetworkSettings


class Delivery:
    def __init__(
        self, settings: IrcNetworkSettings, channels: Channels, me: Registration, out: Outbox
    ) -> None:
        self.settings = settings
        self.channels = channels
        self.me = me
        self.out = out
        self.queues: list[MergeQueue] = []
        self.lines_sent = 0  # caption lines written, all time
        self.inflight: list[OutLine] = []  # written, not yet confirmed
        self.confirming: tuple[str, int] | None = None  # (PING token, lines it covers)
        self._refused: dict[Identifier, int] = {}  # 404s per channel since the last PONG
        self._rr = 0
        self._pings = 0
        self._hostmask = me.hostmask

    def add_queue(self, room: str, channel: str, transcript_url: str = "") -> MergeQueue:
        queue = MergeQueue(
            room, channel, max_lines=self.settings.max_backlog_lines, transcript_url=transcript_url
        )
        queue.budget = self._budget(channel)
        self.queues.append(queue)
        return queue

    def rooms_of(self, target: str) -> tuple[str, ...]:
        """The rooms whose channel is ``target``."""
        name = self.me.ident(target)
        return tuple(q.room for q in self.queues if name == q.target)

    @property
    def backlog(self) -> int:
        """Lines waiting over all rooms (unconfirmed ones included)."""
        return sum(q.backlog for q in self.queues) + len(self.inflight)

    def reset(self) -> None:
        """The connection is gone: lines not confirmed may never have reached their
        channel, so they are sent again."""
        for queue in self.queues:
            queue.requeue([line for line in self.inflight if line.room == queue.room])
        self.inflight.clear()
        self.confirming = None
        self._refused.clear()

    # -- line sizes -----------------------------------------------------------------------

    def update_budgets(self) -> None:
        """Our hostmask changed: the server's prefix around our text changed size."""
        if self.me.hostmask != self._hostmask:
            self._hostmask = self.me.hostmask
            for queue in self.queues:
                queue.budget = self._budget(queue.target)

    def _budget(self, target: str) -> int:
        return protocol.MAX_LINE_BYTES - protocol.relay_overhead(self.me.hostmask, target)

    # -- sending ------------------------------------------------------------------------

    def busy(self, now: float) -> bool:
        """Whether a paced line or a caption line could go out now (tokens permitting)."""
        return bool(self.out.paced) or any(
            len(q) and self.channels.sendable(q.target, now) for q in self.queues
        )

    def next_line(self, now: float, tokens: float) -> tuple[str, bool] | None:
        """The next paced line or caption line, and whether it is a caption; ``tokens``
        are the flood limiter's tokens there now. A caption counts as sent."""
        if self.out.paced:
            return self.out.paced.popleft(), False
        ready = [q for q in self.queues if len(q) and self.channels.sendable(q.target, now)]
        if not ready:
            return None
        self._rr = (self._rr + 1) % len(ready)
        # Pack other speakers' captions into the line when the tokens there now cannot
        # send every waiting line on its own: a conversation then never falls behind.
        waiting = sum(q.backlog for q in ready)
        line = ready[self._rr].take(pack=tokens < waiting)
        if line is None:
            return None
        self.inflight.append(line)
        self.lines_sent += 1
        return format_line(Command.PRIVMSG, line.target, line.text), True

    def confirm_due(self, busy: bool) -> bool:
        """Whether a PING goes right behind the lines sent: when no line waits, or after
        ``confirm_every`` unconfirmed lines (a PING behind every line would halve the
        line rate on servers that pace PING like any command)."""
        if not self.inflight or self.confirming is not None:
            return False
        return not busy or len(self.inflight) >= self.settings.confirm_every

    def confirm(self) -> str:
        """The PING whose PONG confirms the lines sent so far. Servers pace every command
        (ngircd: about one a second after a burst), so the caller spends a token on it
        like on a line, borrowed if need be. With ``confirm_every`` above 1, a few lines
        written before a server dies may be seen twice after the reconnect."""
        self._pings += 1
        token = f"plenary-{self._pings}"
        self.confirming = (token, len(self.inflight))
        return format_line(Command.PING, token)

    # -- receiving ----------------------------------------------------------------------

    def on_refused(self, channel: str) -> None:
        """ERR_CANNOTSENDTOCHAN: one line to ``channel`` did not get through."""
        name = self.me.ident(channel)
        self._refused[name] = self._refused.get(name, 0) + 1

    def on_pong(self, token: str) -> bool:
        """True when ``token`` was our confirming PING's."""
        if self.confirming is None or token != self.confirming[0]:
            return False
        count = self.confirming[1]
        self.confirming = None
        done, self.inflight = self.inflight[:count], self.inflight[count:]
        refused: list[OutLine] = []
        for target, failures in self._refused.items():
            # Refusals are monotonic (a ban, +m): the last lines to that channel failed.
            mine = [line for line in done if target == line.target]
            refused.extend(mine[-failures:])
        self._refused.clear()
        for line in done:
            if any(line is r for r in refused):
                continue
            if line.position is not None:
                self.out.emit(Delivered(line.room, line.position))
        for queue in self.queues:
            queue.requeue([line for line in refused if line.room == queue.room])
        if refused:
            self.out.wake = True
        return True
