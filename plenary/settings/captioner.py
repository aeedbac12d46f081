"""The captioner: its websockets, recognition, voice activity and delivery (bots/captioner)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from plenary.settings.base import OptionalBaseUrl, Port, Secret, Section


class CaptionerSettings(Section):
    """The captioner process (plenary captioner serve)."""

    host: str = Field("127.0.0.1", description="Address the captioner listens on.")
    port: Port = Field(2700, description="Port of the captioner's websockets.")
    threads: int = Field(
        0,
        ge=0,
        le=256,
        description="Recognition threads; 0 means one per CPU core.",
    )
    max_streams: int = Field(
        200,
        ge=1,
        description="Concurrent audio streams accepted; a stream beyond this is refused "
        "(close code 1013) so the running ones keep real time.",
    )
    max_rss_mb: int = Field(
        4096,
        ge=0,
        description="Resident memory limit of the captioner, MiB (0: none). From 90 % of it "
        "new streams and bridge tags are refused with a logged reason; at it no new "
        "recognizer is built. A busy recognizer holds a few MiB with the static graph, tens "
        "to hundreds with 'const' or 'lookahead' (captioner.graph).",
    )
    max_frame_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        description="Largest websocket frame accepted (close code 1009 beyond it).",
    )
    idle_timeout: float = Field(
        3600.0,
        gt=0,
        description="Seconds without any frame after which a stream is closed (code 1008). "
        "Long by default: Jigasi sends nothing while a participant is muted, and an idle "
        "stream holds no recognizer. Dead peers are found sooner by websocket pings.",
    )
    default_sample_rate: int = Field(
        16000,
        ge=8000,
        le=192000,
        description="Sample rate assumed for audio that arrives before a config frame "
        "(a warning is logged; vosk-server silently assumes 8000).",
    )
    default_language: str = Field("ko", description="Language of a stream that names none.")
    default_room: str = Field("default", description="Room of a stream that names none.")
    vad_aggressiveness: int = Field(
        3,
        ge=0,
        le=3,
        description="WebRTC VAD mode: 0 keeps the most audio, 3 rejects the most noise.",
    )
    vad_energy_floor_dbfs: float = Field(
        -50.0,
        le=0,
        description="Frames quieter than this (RMS, dBFS) count as silence without running "
        "the VAD.",
    )
    vad_silence_ms: int = Field(
        # Measured 2026-11-28 on the 36 Korean utterances, with vad_hold_ms 2000 (the
        # recognizer kept warm through the pause): 450 ms splits 10 sentences at commas,
        # CER 0.340; 500 and 600 ms split 7, CER 0.331 and 0.329-0.331 (0.347 and 0.366
        # without the hold). 500 ms always ends an utterance within the next 0.5 s Jigasi
        # frame (600 ms often needed two: meeting final p95 1.05 s), see docs/benchmarks.md.
        500,
        ge=90,
        le=5000,
        description="Trailing silence that ends an utterance and releases its final.",
    )
    vad_hold_ms: int = Field(
        2000,
        ge=0,
        le=10000,
        description="After an utterance's final, its recognizer stays with the stream this "
        "long, fed the pause, so speech resuming within it continues warm (no accuracy lost "
        "at a comma); then it goes back to the pool. Costs one recognizer per speaker who "
        "spoke within it.",
    )
    max_utterance_seconds: float = Field(
        15.0,
        ge=2,
        le=120,
        description="An utterance longer than this is finalized and a new one begun, "
        "bounding latency for speakers who never pause.",
    )
    graph: Literal["lookahead", "const", "static"] = Field(
        "static",
        description="How a lookahead model (graph/HCLr.fst and an ngram graph/Gr.fst, like "
        "the Korean one) is decoded. 'static': HCLr and Gr composed once into one "
        "HCLG.fst (~1 GB on disk; building it takes ~3 min and ~5 GB of RAM, at the first "
        "start or ahead of it with `plenary captioner prepare`), memory-mapped: about a "
        "third of the CPU of 'lookahead', flat from the first second, and a process holds "
        "only the pages of the graph its speech reaches; if it cannot be built, 'const' is "
        "used. 'const': the language model converted once to OpenFst's const type (same "
        "words, about 20 % less CPU than 'lookahead', 10 s to build), composed on the fly "
        "by each recognizer. 'lookahead': as shipped. Converted graphs go to "
        "captioner.graph_cache; the conversion needs the OpenFst tools (Debian: "
        "libfst-tools, libfst22-plugins-base), without which the model is used as shipped, "
        "with a warning. Models with their own HCLG.fst are always used as shipped.",
    )
    graph_cache: Path = Field(
        Path("~/.cache/plenary/graphs"),
        description="Folder for converted decoding graphs (captioner.graph): one folder "
        "per model, linking the model's files; rebuilt when the model's Gr.fst changes.",
    )
    warm_recognizers: int = Field(
        0,
        ge=0,
        le=256,
        description="Recognizers warmed at start-up (each decodes 3 s of audio: a cold one "
        "costs 2-4 times the CPU) and kept however quiet it gets; 0 means two per "
        "recognition thread. Beyond them the pool keeps as many as were in use at once "
        "during the last captioner.warm_peak_seconds, while RSS is under 75 % of "
        "captioner.max_rss_mb. Each holds a few MiB with the static graph, tens to hundreds "
        "of graph cache with 'const' or 'lookahead' (captioner.graph).",
    )
    warm_peak_seconds: float = Field(
        60.0,
        gt=0,
        description="How long a peak of concurrent utterances keeps that many recognizers "
        "warm; afterwards the idle surplus is freed and the memory handed back.",
    )
    warm_audio: Path | None = Field(
        None,
        description="16-bit PCM WAV (any rate; the first channel) of speech in the default "
        "language, decoded by each warm recognizer at start-up (its first 3 s); none: a "
        "synthetic voiced signal, which warms less.",
    )
    warm_refresh_seconds: float = Field(
        15.0,
        ge=0,
        description="An idle recognizer that has decoded more than this much audio "
        "(warm-up included) and has not been used for captioner.warm_peak_seconds / 6 is "
        "replaced by a freshly warmed one while a recognition thread is free, one at a "
        "time: with 'const' or 'lookahead' (captioner.graph) its graph cache only grows "
        "(about 30 MiB in 10 s of speech), so after a "
        "busy spell the kept recognizers come back to their start-up size. 0: never.",
    )
    recognizer_max_audio_seconds: float = Field(
        600.0,
        ge=10,
        description="A recognizer is retired after decoding this much speech: its graph "
        "cache only grows, and the memory comes back only when it is destroyed.",
    )
    partial_interval_ms: int = Field(
        200,
        ge=0,
        description="Audio between two partial results of an utterance (0: every frame).",
    )
    bridge_max_sources: int = Field(
        # Well under max_streams: one meeting must not take the machine.
        50,
        ge=1,
        description="Audio sources (tags) accepted in one Jitsi bridge session, at most; media "
        "for more is refused with a logged reason while the others carry on. A session also "
        "takes no more than its fair share of captioner.max_streams (divided between the "
        "bridge sessions holding streams and the vosk endpoint), so one meeting never takes "
        "the machine.",
    )
    bridge_quiet_ms: int = Field(
        400,
        ge=50,
        le=5000,
        description="A Jitsi bridge source that sends no packet for this long is finalized. "
        "Opus senders keep sending ~200 ms of quiet packets before they stop (DTX), so "
        "400 ms here is about the same 600 ms of silence as captioner.vad_silence_ms.",
    )
    bridge_resume_seconds: float = Field(
        15.0,
        ge=0,
        description="How long a Jitsi bridge session outlives its websocket, so a reconnect "
        "with the same sessionId keeps its speakers, recognizers and open utterances.",
    )
    bridge_max_frame_bytes: int = Field(
        65536,
        ge=1024,
        description="Largest MediaJson frame from a Jitsi bridge (one Opus packet is under "
        "2 KiB); the socket is closed with code 1009 beyond it and the session kept for resume.",
    )
    orchestrator_url: OptionalBaseUrl = Field(
        "",
        description="Base URL of the orchestrator this captioner delivers its captions to "
        "(POST <url>/api/v1/captions), e.g. 'http://10.0.0.5:8090'. `plenary serve` fills it "
        "with its own loopback address; empty elsewhere: captions go back to Jitsi only "
        "(sendBack), and start-up says so.",
    )
    orchestrator_token: Secret = Field(
        "",
        description="This captioner's producer credential: one of the orchestrator's "
        "captions.producers tokens (never the Jitsi signing secret).",
    )
    delivery_queue: int = Field(
        10000,
        ge=10,
        description="Final captions held while the orchestrator is unreachable; beyond it the "
        "oldest are dropped and the room is told how many.",
    )
    access_token: Secret = Field(
        "",
        description="Token a client must present to the captioner's websockets (?token= in "
        "the URL, or Authorization: Bearer); empty: no token (keep the captioner on "
        "loopback or a private address then).",
    )
