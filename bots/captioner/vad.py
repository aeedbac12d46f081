"""Voice activity segmentation: PCM in, utterance boundaries out. No I/O.

Vosk's own endpointer waits for silence *phones*, which in a quiet room with
low background noise often never come, so finals are held back for many seconds.
The WebRTC VAD decides per 30 ms frame; a cheap level gate in front of it lets
silent audio (an open microphone, comfort noise) cost almost nothing. The WebRTC
VAD takes steady broadband noise (a fan, a hissing microphone) for speech, so the
gate also tracks each stream's noise floor and only asks the VAD about frames
that stand clearly above it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import webrtcvad

RATE = 16000
FRAME_SAMPLES = 480  # 30 ms at 16 kHz, one of the VAD's three frame sizes
FRAME_BYTES = FRAME_SAMPLES * 2
FRAME_SECONDS = FRAME_SAMPLES / RATE
SNR_DB = 10.0  # how far above the noise floor a frame must be to be a speech candidate
FLOOR_FALL = 0.3  # the floor follows quieter frames quickly…
FLOOR_RISE_DB = 0.1  # …and louder ones slowly: 0.1 dB a frame is 3.3 dB a second


@dataclass(frozen=True, slots=True)
class Start:
    """Speech began; ``pcm`` is the pre-roll, including the onset frames."""

    pcm: bytes
    sample: int  # position (16 kHz samples on the stream clock) of the first byte of pcm


@dataclass(frozen=True, slots=True)
class Audio:
    pcm: bytes


@dataclass(frozen=True, slots=True)
class End:
    """The utterance ended at ``sample`` (after its last speech frame): publish its final.

    The pause that follows is still passed on as ``Audio`` for ``hold_ms``, so the
    recognizer keeps its acoustic state; a ``Start`` within the hold continues on the same
    recognizer (its pre-roll was passed on already, as the end of the pause).
    """

    sample: int


@dataclass(frozen=True, slots=True)
class Release:
    """The pause after the last ``End`` outlasted the hold: the speaker is done for now."""

    sample: int


Action = Start | Audio | End | Release


class Segmenter:
    """Feed 16 kHz mono s16le PCM of any length; get Start/Audio/End actions back.

    >>> seg = Segmenter()
    >>> seg.push(b"\\0" * 32000)  # a second of digital silence
    []
    """

    def __init__(
        self,
        *,
        aggressiveness: int = 3,
        energy_floor_dbfs: float = -50.0,
        silence_ms: int = 400,
        onset_frames: int = 3,
        onset_window: int = 5,
        # Pre-roll before the onset: over a noisy background a second of it lets a cold
        # recognizer's CMVN and i-vector adapt to the channel first (the meeting shape over
        # -55 dBFS noise: CER 0.30 -> 0.27); over a quiet one (a studio's -65 dBFS) that
        # second is near-silence that skews them instead (36 studio utterances: 0.33 ->
        # 0.34), so there only ``quiet_preroll_ms`` (docs/benchmarks.md).
        preroll_ms: int = 1000,
        quiet_preroll_ms: int = 300,
        quiet_floor_dbfs: float = -60.0,
        max_utterance_s: float = 15.0,
        hold_ms: int = 0,
    ) -> None:
        self._vad = webrtcvad.Vad(aggressiveness)
        # RMS of a full-scale sine is 1/sqrt(2) of peak; dBFS here is relative to 32768.
        self._floor_db = energy_floor_dbfs
        # Running estimate of this stream's noise floor, seeded by its first frame.
        self._noise_db: float | None = None
        self._silence_frames = max(1, round(silence_ms / 30))
        self._onset_frames = onset_frames
        self._recent: deque[bool] = deque(maxlen=onset_window)
        self._preroll: deque[bytes] = deque(maxlen=max(onset_window, round(preroll_ms / 30)))
        self._quiet_preroll = max(onset_window, round(quiet_preroll_ms / 30))
        self._quiet_floor_db = quiet_floor_dbfs
        self._max_frames = round(max_utterance_s / FRAME_SECONDS)
        self._hold_frames = round(hold_ms / 30)
        self._hold_left = 0  # frames of pause still passed on after the last End
        self._pending = b""
        self._sample = 0  # stream position of the next frame
        self.active = False
        self._trailing_silence = 0
        self._utterance_frames = 0
        self.speech_frames = 0
        self.skipped_frames = 0

    def push(self, pcm: bytes) -> list[Action]:
        data = self._pending + pcm
        whole = len(data) - len(data) % FRAME_BYTES
        self._pending = data[whole:]
        if not whole:
            return []
        frames = np.frombuffer(data[:whole], dtype="<i2").reshape(-1, FRAME_SAMPLES)
        rms = np.sqrt(np.mean(frames.astype(np.float32) ** 2, axis=1))
        levels = 20 * np.log10(np.maximum(rms, 1.0) / 32768.0)
        actions: list[Action] = []
        if self._noise_db is None:
            self._noise_db = float(levels[0])
        for i, level in enumerate(levels.tolist()):
            loud = level >= max(self._floor_db, self._noise_db + SNR_DB)
            self._track_noise(level)
            frame = data[i * FRAME_BYTES : (i + 1) * FRAME_BYTES]
            speech = loud and self._vad.is_speech(frame, RATE)
            self._step(frame, speech, actions)
            self._sample += FRAME_SAMPLES
        return _coalesce(actions)

    @property
    def holding(self) -> bool:
        """Between an ``End`` and its ``Release``: the pause is still passed on."""
        return self._hold_left > 0

    def end(self) -> list[Action]:
        """The stream stopped: close an open utterance and release the hold."""
        out: list[Action] = []
        if self.active:
            self.active = False
            out.append(End(self._sample))
        elif not self._hold_left:
            return out
        self._recent.clear()
        self._hold_left = 0
        out.append(Release(self._sample))
        return out

    def _track_noise(self, level: float) -> None:
        """Minimum tracking: a good-enough noise floor for a gate, at no cost."""
        assert self._noise_db is not None
        if level < self._noise_db:
            self._noise_db += FLOOR_FALL * (level - self._noise_db)
        else:
            self._noise_db += min(FLOOR_RISE_DB, level - self._noise_db)

    def _step(self, frame: bytes, speech: bool, out: list[Action]) -> None:
        if speech:
            self.speech_frames += 1
        if not self.active:
            self._preroll.append(frame)
            self._recent.append(speech)
            held = self._hold_left > 0
            if held:
                out.append(Audio(frame))  # the pause, for the held recognizer
            if sum(self._recent) >= self._onset_frames:
                frames = list(self._preroll)
                assert self._noise_db is not None
                if self._noise_db < self._quiet_floor_db:
                    frames = frames[-self._quiet_preroll :]
                preroll = b"".join(frames)
                start = self._sample + FRAME_SAMPLES - len(preroll) // 2
                self._preroll.clear()
                self._recent.clear()
                self.active = True
                self._trailing_silence = 0
                self._utterance_frames = len(preroll) // FRAME_BYTES
                self._hold_left = 0
                # Within the hold the pre-roll was passed on as the pause already; it
                # comes again here for a recognizer that drops what it made of the pause.
                out.append(Start(preroll, start))
                return
            if not held:
                self.skipped_frames += 1
            else:
                self._hold_left -= 1
                if not self._hold_left:
                    out.append(Release(self._sample + FRAME_SAMPLES))
            return
        out.append(Audio(frame))
        self._utterance_frames += 1
        self._trailing_silence = 0 if speech else self._trailing_silence + 1
        if self._trailing_silence >= self._silence_frames:
            self.active = False
            out.append(End(self._sample + FRAME_SAMPLES))
            self._hold_left = self._hold_frames
            if not self._hold_left:
                out.append(Release(self._sample + FRAME_SAMPLES))
        elif self._utterance_frames >= self._max_frames:
            # Split a long run of speech; the next frame starts a new utterance at once.
            out.append(End(self._sample + FRAME_SAMPLES))
            out.append(Start(b"", self._sample + FRAME_SAMPLES))
            self._utterance_frames = 0


def _coalesce(actions: list[Action]) -> list[Action]:
    """Join consecutive Audio actions so the recognizer gets fewer, larger calls."""
    out: list[Action] = []
    run: list[bytes] = []
    for action in actions:
        if isinstance(action, Audio):
            run.append(action.pcm)
            continue
        if run:
            out.append(Audio(b"".join(run)))
            run = []
        out.append(action)
    if run:
        out.append(Audio(b"".join(run)))
    return out
