"""Flood control: a token bucket per connection and a merging, bounded queue per channel.

Pure code, no I/O and no clock of its own: callers pass ``now`` (monotonic seconds).

Servers disconnect clients that send too fast ("Excess Flood"; docs/protocols.md §6), so
a connection sends a small burst and then about one line a second. Captions can come
faster than that. Rather than falling minutes behind, consecutive captions of the same
speaker that are still waiting are merged into one text, which the splitter then packs
into as few full lines as possible; when lines cannot go out as fast as captions come,
the captions of different speakers waiting are packed into one line too
(``<A> … · <B> …``), so the delay stays bounded in a conversation. Every word goes out
once, in order. Only when the backlog still grows past its bound are the oldest waiting
captions dropped and replaced by one notice saying how many lines were skipped and
where the full transcript is.

    bucket = TokenBucket(burst=4, rate=1.0, now=0.0)
    bucket.delay(now=0.0)  # 0.0: a token is there, take it with bucket.take()
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from bots.irc.lines import cut, line_count, speaker_prefix

SEPARATOR = " · "  # between speakers packed into one line
MIN_PIECE = 16  # bytes of text worth packing behind another speaker's caption


class TokenBucket:
    """``burst`` lines at once, then ``rate`` lines a second."""

    def __init__(self, burst: int, rate: float, now: float) -> None:
        if burst < 1 or rate <= 0:
            raise ValueError("burst must be >= 1 and rate > 0")
        self.burst = burst
        self.rate = rate
        self._tokens = float(burst)
        self._stamp = now

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def delay(self, now: float) -> float:
        """Seconds until a token is available (0.0: one is available now)."""
        self._refill(now)
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate

    def take(self, now: float) -> None:
        self._refill(now)
        self._tokens -= 1

    def available(self, now: float) -> float:
        """Tokens there now (negative when borrowed)."""
        self._refill(now)
        return self._tokens

    def set_rate(self, rate: float, now: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self._refill(now)
        self.rate = rate


@dataclass(slots=True)
class Pending:
    """A caption (or several merged ones) waiting for a channel.

    ``position`` is the caption event id of the last caption merged in: once every
    line of this item is delivered, the room's stream may resume after it. A
    ``rendered`` item is a finished line that is sent as is (a notice, or a line sent
    before a reconnect and not confirmed).
    """

    speaker: str
    text: str
    position: int | None
    rendered: bool = False
    started: bool = False


@dataclass(frozen=True, slots=True)
class OutLine:
    """One line to send; ``position`` is set on the last line of a caption of ``room``."""

    room: str
    target: str
    text: str
    position: int | None


class MergeQueue:
    """One room's captions waiting for its channel, oldest first, at most ``max_lines`` lines."""

    def __init__(self, room: str, target: str, *, max_lines: int, transcript_url: str = "") -> None:
        self.room = room
        self.target = target
        self.max_lines = max_lines
        self.transcript_url = transcript_url
        self.budget = 400  # bytes a line may hold; the client updates it
        self.merged = 0  # captions folded into an earlier one
        self.skipped_lines = 0  # lines dropped, all time
        self.packed = 0  # captions of another speaker packed into a line
        self._items: deque[Pending] = deque()
        self._unreported = 0  # dropped lines not yet announced
        self._skip_position: int | None = None

    def __len__(self) -> int:
        return len(self._items) + (1 if self._unreported else 0)

    @property
    def backlog(self) -> int:
        """Lines waiting (an estimate: captions packed behind each other share lines)."""
        rendered = sum(1 for item in self._items if item.rendered)
        size = sum(
            len(f"{speaker_prefix(item.speaker)}{item.text}{SEPARATOR}".encode())
            for item in self._items
            if not item.rendered
        )
        return rendered + -(-size // self.budget) + (1 if self._unreported else 0)

    def _lines(self, item: Pending) -> int:
        if item.rendered:
            return 1
        return line_count(item.speaker, item.text, self.budget)

    def push(self, speaker: str, text: str, position: int) -> None:
        tail = self._items[-1] if self._items else None
        if tail and not tail.started and not tail.rendered and tail.speaker == speaker:
            tail.text = f"{tail.text} {text}"
            tail.position = position
            self.merged += 1
        else:
            self._items.append(Pending(speaker, text, position))
        self._bound()

    def push_line(self, text: str, position: int) -> None:
        """A finished line (a correction): sent as is, never merged with captions."""
        self._items.append(Pending("", text, position, rendered=True))
        self._bound()

    def _bound(self) -> None:
        while len(self._items) > 1 and self.backlog > self.max_lines:
            dropped = self._items.popleft()
            self._unreported += self._lines(dropped)
            self.skipped_lines += self._lines(dropped)
            if dropped.position is not None:
                self._skip_position = dropped.position

    def clear(self) -> None:
        """Forget what waits (another relay serves the channel from its own position)."""
        self._items.clear()
        self._unreported = 0
        self._skip_position = None

    def requeue(self, lines: list[OutLine]) -> None:
        """Put lines that were sent but not confirmed back at the front, in order."""
        for line in reversed(lines):
            self._items.appendleft(Pending("", line.text, line.position, rendered=True))

    def skip_notice(self) -> str:
        where = f" — full transcript: {self.transcript_url}" if self.transcript_url else ""
        return f"[{self._unreported} lines skipped{where}]"

    def take(self, *, pack: bool = False) -> OutLine | None:
        """The next line to send, or None when nothing waits.

        With ``pack`` (lines are scarcer than captions) the captions waiting behind the
        first one are added to its line, other speakers' too, as far as the line holds:
        ``<A> … · <B> …``. A caption that does not fit whole is cut at a space and the
        rest waits for the next line.
        """
        if self._unreported:
            line = OutLine(self.room, self.target, self.skip_notice(), self._skip_position)
            self._unreported = 0
            self._skip_position = None
            return line
        if not self._items:
            return None
        item = self._items[0]
        if item.rendered:
            self._items.popleft()
            head, rest = cut(item.text, self.budget)  # the budget may have shrunk
            if rest:
                self._items.appendleft(Pending("", rest, item.position, rendered=True))
                return OutLine(self.room, self.target, head, None)
            return OutLine(self.room, self.target, head, item.position)
        text, position = self._piece(item, self.budget)
        if position is None or not pack:
            return OutLine(self.room, self.target, text, position)
        while self._items and not self._items[0].rendered:
            room = self.budget - len((text + SEPARATOR).encode("utf-8"))
            following = self._items[0]
            if room - len(speaker_prefix(following.speaker).encode("utf-8")) < MIN_PIECE:
                break
            piece, finished = self._piece(following, room, whole_words=True)
            if not piece:
                break
            text += SEPARATOR + piece
            self.packed += 1
            if finished is None:
                break
            position = finished
        return OutLine(self.room, self.target, text, position)

    def _piece(
        self, item: Pending, budget: int, *, whole_words: bool = False
    ) -> tuple[str, int | None]:
        """``<Speaker> text`` of the head item within ``budget`` bytes, and the position
        to resume after if the item is now finished (None: part of it still waits).
        With ``whole_words`` nothing is taken unless the cut falls at a space."""
        prefix = speaker_prefix(item.speaker)
        head, rest = cut(item.text, budget - len(prefix.encode("utf-8")))
        if rest and whole_words and item.text[len(head) : len(head) + 1] != " ":
            return "", None
        if rest:
            item.text = rest
            item.started = True
            return prefix + head, None
        self._items.popleft()
        return prefix + head, item.position
