"""Speech → MediaJson frames exactly as a Jitsi videobridge sends them (test and bench helper).

Each source gets its own Opus encoder (48 kHz mono, 20 ms packets), RTP sequence
numbers and timestamps; numbers go out as JSON strings. Silence is sent the way a
bridge does: not at all (DTX: sequence numbers stay contiguous, the timestamp jumps)
or as packets flagged ``"vad": false`` with a quiet ``audioLevel``.
"""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import dataclass, field

import numpy as np
import opuslib

RATE = 48000
FRAME = 960
SILENCE_DBFS = -55.0  # 20 ms frames quieter than this count as silence
DTX_HANGOVER = 10  # like Opus DTX: only after 200 ms of silence does the sender stop sending
BITRATE = 32000  # what browsers send for mono speech by default


@dataclass
class _Track:
    endpoint: str
    encoder: opuslib.Encoder
    seq: int
    timestamp: int


@dataclass
class FakeBridge:
    """Builds the frames of one bridge session; ``sent`` counts frames handed out."""

    seq: int = 0  # the frame's sequenceNumber, one counter for the whole socket
    tracks: dict[str, _Track] = field(default_factory=dict)

    def _next(self) -> str:
        self.seq += 1
        return str(self.seq)

    def start(self, tag: str, encoding: str = "opus") -> str:
        endpoint = tag.split("-")[0]
        if tag not in self.tracks:
            encoder = opuslib.Encoder(RATE, 1, opuslib.APPLICATION_VOIP)
            encoder.bitrate = BITRATE
            # Random-looking starting points, some near the 16-bit wrap, as real streams have.
            crc = zlib.crc32(tag.encode())
            self.tracks[tag] = _Track(endpoint, encoder, 65000 + crc % 1000, crc >> 8)
        return json.dumps(
            {
                "event": "start",
                "sequenceNumber": self._next(),
                "start": {
                    "tag": tag,
                    "mediaFormat": {"encoding": encoding, "sampleRate": 48000, "channels": 2},
                    "customParameters": {"endpointId": endpoint},
                },
            }
        )

    def media(self, tag: str, payload: str, *, silent: bool | None = None) -> str:
        """One media frame carrying ``payload`` (already base64) as the source's next packet."""
        track = self.tracks[tag]
        media: dict[str, object] = {
            "tag": tag,
            "chunk": str(track.seq),
            "timestamp": str(track.timestamp),
            "payload": payload,
        }
        if silent is not None:
            media["audioLevel"] = 127 if silent else 30
            media["vad"] = not silent
        track.seq = (track.seq + 1) & 0xFFFF
        track.timestamp = (track.timestamp + FRAME) & 0xFFFFFFFF
        return json.dumps({"event": "media", "sequenceNumber": self._next(), "media": media})

    def speech(
        self,
        tag: str,
        pcm48: bytes,
        *,
        silence: str = "dtx",
        lose: frozenset[int] = frozenset(),
    ) -> list[tuple[float, str]]:
        """(seconds from the first packet, frame) for 48 kHz s16le ``pcm48``, cut into 20 ms.

        ``silence``: "dtx" skips silent packets, "vad" flags them, "send" sends them plain.
        ``lose``: packet indexes never sent (lost in the network: seq and timestamp advance).
        """
        if tag not in self.tracks:
            self.start(tag)
        track = self.tracks[tag]
        samples = np.frombuffer(pcm48, dtype="<i2")
        samples = np.concatenate([samples, np.zeros(-len(samples) % FRAME, np.int16)])
        out: list[tuple[float, str]] = []
        quiet_run = 0
        for n in range(len(samples) // FRAME):
            frame = samples[n * FRAME : (n + 1) * FRAME]
            rms = float(np.sqrt(np.mean(frame.astype(np.float32) ** 2)))
            quiet = 20 * np.log10(max(rms, 1.0) / 32768) < SILENCE_DBFS
            quiet_run = quiet_run + 1 if quiet else 0
            packet = track.encoder.encode(frame.tobytes(), FRAME)
            if n in lose or (quiet_run > DTX_HANGOVER and silence == "dtx"):
                track.seq = (track.seq + (1 if n in lose else 0)) & 0xFFFF
                track.timestamp = (track.timestamp + FRAME) & 0xFFFFFFFF
                continue
            payload = base64.b64encode(packet).decode("ascii")
            flag = quiet if silence == "vad" else None
            out.append((n * FRAME / RATE, self.media(tag, payload, silent=flag)))
        return out


def ping(ident: int) -> str:
    return json.dumps({"event": "ping", "id": ident})
