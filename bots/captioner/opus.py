"""One audio source's RTP packets → 48 kHz mono PCM: reordering, loss and Opus decoding.

``JitterBuffer`` is pure bookkeeping on RTP sequence numbers and timestamps (no
decoding, no clock): it puts packets back in order, drops duplicates, and turns a
gap in sequence numbers into ``Lost`` (to be concealed) and a jump in timestamps
with contiguous sequence numbers (the sender stopped sending in silence, DTX) into
``Gap`` (silence). ``OpusSource`` decodes with libopus (through opuslib), one
decoder per source, using libopus's own loss concealment and in-band FEC.

>>> jb = JitterBuffer()
>>> [type(s).__name__ for s in jb.push(Packet(10, 0, b"\\x78", False))]
['Packet']
>>> jb.push(Packet(10, 0, b"\\x78", False)), jb.stale  # the same packet again
([], 1)
"""

from __future__ import annotations

from dataclasses import dataclass

import opuslib

RATE = 48000
FRAME = 960  # 20 ms, what the bridge sends
MAX_FRAME = 5760  # 120 ms, the longest Opus packet
SEQ_MOD = 1 << 16
TS_MOD = 1 << 32
RESTART_JUMP = 1000  # a sequence jump this large (20 s) is a new stream, not loss


@dataclass(frozen=True, slots=True)
class Packet:
    seq: int | None
    timestamp: int | None
    data: bytes
    silent: bool  # the bridge marked it as holding no speech: skip decoding


@dataclass(frozen=True, slots=True)
class Lost:
    count: int  # packets never received (already capped at max_conceal)


@dataclass(frozen=True, slots=True)
class Gap:
    samples: int  # silence the sender did not send (DTX), capped


Step = Packet | Lost | Gap


class JitterBuffer:
    """Hold up to ``depth`` packets waiting for a missing one, then declare it lost."""

    def __init__(self, depth: int = 3, max_conceal: int = 5, max_gap: int = RATE) -> None:
        self.depth = depth
        self.max_conceal = max_conceal
        self.max_gap = max_gap
        self._held: dict[int, Packet] = {}
        self._next: int | None = None
        self._end_ts: int | None = None  # timestamp just after the last released packet
        self.stale = 0  # duplicates, and packets that came after their place was passed
        self.lost = 0
        self.restarts = 0

    @property
    def holding(self) -> int:
        return len(self._held)

    def push(self, packet: Packet) -> list[Step]:
        if packet.seq is None:  # no sequence information: take packets as they come
            return self._release(packet, [])
        if self._next is None:
            self._next = packet.seq
        ahead = (packet.seq - self._next) % SEQ_MOD
        if RESTART_JUMP <= ahead <= SEQ_MOD - RESTART_JUMP:
            out = self.drain()
            self.restarts += 1
            self._next, self._end_ts = packet.seq, None
            ahead = 0
        else:
            out = []
        if ahead >= SEQ_MOD // 2:
            self.stale += 1  # already released or declared lost
            return out
        if packet.seq in self._held:
            self.stale += 1
            return out
        self._held[packet.seq] = packet
        return self._advance(out, force=False)

    def drain(self) -> list[Step]:
        """Release everything held (the source went quiet): missing packets count as lost."""
        return self._advance([], force=True)

    def reset(self) -> None:
        """Forget sequence state (a new websocket: the bridge may start numbering afresh)."""
        self._held.clear()
        self._next = None
        self._end_ts = None

    def _advance(self, out: list[Step], *, force: bool) -> list[Step]:
        while self._held:
            assert self._next is not None
            packet = self._held.pop(self._next, None)
            if packet is not None:
                self._next = (self._next + 1) % SEQ_MOD
                self._release(packet, out)
                continue
            if not force and len(self._held) <= self.depth:
                break
            nxt = self._next
            first = min(self._held, key=lambda s: (s - nxt) % SEQ_MOD)
            missing = (first - nxt) % SEQ_MOD
            self.lost += missing
            out.append(Lost(min(missing, self.max_conceal)))
            self._next = first
            self._end_ts = None  # the lost packets' durations are unknown
        return out

    def _release(self, packet: Packet, out: list[Step]) -> list[Step]:
        if packet.timestamp is not None:
            if self._end_ts is not None:
                gap = (packet.timestamp - self._end_ts) % TS_MOD
                if 0 < gap < TS_MOD // 2:
                    out.append(Gap(min(gap, self.max_gap)))
            self._end_ts = (packet.timestamp + packet_samples(packet.data)) % TS_MOD
        out.append(packet)
        return out


def packet_samples(data: bytes) -> int:
    """Samples at 48 kHz in an Opus packet, from its TOC byte (RFC 6716 §3.1); 960 if unreadable."""
    if not data:
        return FRAME
    toc = data[0]
    per_frame = _frame_samples(toc)
    code = toc & 3
    if code == 0:
        frames = 1
    elif code in (1, 2):
        frames = 2
    else:
        frames = data[1] & 0x3F if len(data) > 1 else 0
    total = per_frame * frames
    return total if 0 < total <= MAX_FRAME else FRAME


MAX_FRAME_BYTES = 1275  # RFC 6716 §3.2.1: no frame is longer
# Six 20 ms frames (120 ms, the longest packet) of the largest size, their length bytes
# and the TOC: anything longer is not a packet a browser or the bridge sends.
MAX_PACKET = 6 * MAX_FRAME_BYTES + 13


def invalid_packet(data: bytes) -> str | None:
    """Why ``data`` is not a well-formed Opus packet (RFC 6716 §3.4, R1-R7), or None.

    Only structure is checked (TOC, frame count, frame and padding lengths), never the
    coded audio: libopus is never handed a packet whose framing it would have to guess.

    >>> invalid_packet(b"\\x78" + bytes(60)), invalid_packet(b"")
    (None, 'empty')
    >>> invalid_packet(b"\\xff\\xff\\xff\\xff")  # code 3: 63 frames of 20 ms
    'toc'
    """
    if not data:
        return "empty"  # R1
    if len(data) > MAX_PACKET:
        return "oversized"
    code = data[0] & 3
    body = len(data) - 1
    if code == 0:
        return None if body <= MAX_FRAME_BYTES else "length"  # R2
    if code == 1:
        return None if body % 2 == 0 and body // 2 <= MAX_FRAME_BYTES else "length"  # R3
    if code == 2:
        first, used = _frame_length(data, 1)
        if first is None:
            return "truncated"
        rest = body - used - first  # the second frame
        if rest < 0:
            return "truncated"  # R4
        return None if max(first, rest) <= MAX_FRAME_BYTES else "length"
    if len(data) < 2:
        return "truncated"
    count = data[1] & 0x3F
    if count == 0 or count * _frame_samples(data[0]) > MAX_FRAME:
        return "toc"  # R5
    pos, padding = 2, 0
    if data[1] & 0x40:  # padding lengths: 255 means 254 bytes and another length byte
        while True:
            if pos >= len(data):
                return "padding"
            size = data[pos]
            pos += 1
            padding += 254 if size == 255 else size
            if size != 255:
                break
    left = len(data) - pos - padding
    if left < 0:
        return "padding"
    if not data[1] & 0x80:  # constant bitrate: equal frames
        ok = left % count == 0 and left // count <= MAX_FRAME_BYTES
        return None if ok else "length"  # R6
    for _ in range(count - 1):  # variable bitrate: every frame's length but the last
        length, used = _frame_length(data, pos)
        if length is None:
            return "truncated"
        pos += used
        left -= used + length
        if length > MAX_FRAME_BYTES:
            return "length"
    if left < 0:
        return "truncated"
    return None if left <= MAX_FRAME_BYTES else "length"  # R7


def _frame_length(data: bytes, pos: int) -> tuple[int | None, int]:
    """A frame length (RFC 6716 §3.2.1) at ``pos``: (length, bytes it took)."""
    if pos >= len(data):
        return None, 0
    first = data[pos]
    if first < 252:
        return first, 1
    if pos + 1 >= len(data):
        return None, 1
    return first + 4 * data[pos + 1], 2


def _frame_samples(toc: int) -> int:
    config = toc >> 3
    if config < 12:  # SILK: 10, 20, 40, 60 ms
        return (480, 960, 1920, 2880)[config % 4]
    if config < 16:  # hybrid: 10, 20 ms
        return (480, 960)[config % 2]
    return (120, 240, 480, 960)[config % 4]  # CELT: 2.5, 5, 10, 20 ms


class OpusError(Exception):
    """A packet libopus could not decode (garbage or truncated)."""


class OpusSource:
    """One source's decoder. Output is s16le mono at 48 kHz whatever the packets hold."""

    def __init__(self) -> None:
        self._decoder = opuslib.Decoder(RATE, 1)
        self._frame = FRAME  # length of the last good packet: what a lost one is assumed to be
        self.decoded = 0
        self.concealed = 0

    def decode(self, data: bytes) -> bytes:
        try:
            pcm: bytes = self._decoder.decode(data, MAX_FRAME)
        except opuslib.OpusError as exc:
            raise OpusError(_reason(exc)) from None
        self._frame = len(pcm) // 2 or FRAME
        self.decoded += 1
        return pcm

    def conceal(self, count: int, following: bytes | None = None) -> bytes:
        """Audio for ``count`` lost packets: libopus concealment, and for the last one the
        in-band FEC copy inside ``following`` (the next packet) when it carries one."""
        out = []
        for n in range(count):
            fec = following is not None and n == count - 1
            try:
                if fec:
                    out.append(self._decoder.decode(following, self._frame, decode_fec=True))
                else:
                    out.append(self._decoder.decode(b"", self._frame))
            except opuslib.OpusError:
                out.append(silence(self._frame))
            self.concealed += 1
        return b"".join(out)


def silence(samples: int) -> bytes:
    return b"\0" * (2 * samples)


def _reason(exc: opuslib.OpusError) -> str:
    text = exc.args[0] if exc.args else exc
    return text.decode("ascii", "replace") if isinstance(text, bytes) else str(text)
