"""The captioner's metrics: streams by path, audio decoded vs skipped, speed, latency, load.

Metric objects are module-level (prometheus_client's idiom), in no global registry;
``new_captioner_registry`` puts them in one app's registry with a collector that reads
the engine's thread pool at scrape time. The engine and endpoints record with one call:

    metrics.STREAMS.labels(path="vosk").inc()  # only StreamBudget (admission.py) counts streams
    metrics.observe_decode(elapsed, audio_seconds)  # per recognition call
    metrics.CAPTION_LATENCY.observe(seconds)  # audio in → final caption published

Silence skipped by the VAD is ``audio_received - audio_decoded`` (two counters rather than
one with an outcome label: pre-roll is decoded after it was received, so a "skipped"
counter would have to go down).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from plenary.exposition import new_registry

if TYPE_CHECKING:
    from bots.captioner.engine import Engine

PATHS = ("vosk", "bridge", "file")

STREAMS = Gauge(
    "plenary_captioner_streams",
    "Audio streams being captioned, by path (vosk websocket, Jitsi bridge source, file).",
    ["path"],
    registry=None,
)
AUDIO_RECEIVED = Counter(
    "plenary_captioner_audio_received_seconds",
    "Seconds of audio received from every stream.",
    registry=None,
)
AUDIO_DECODED = Counter(
    "plenary_captioner_audio_decoded_seconds",
    "Seconds of audio run through Vosk; received minus decoded was skipped as silence.",
    registry=None,
)
REAL_TIME_FACTOR = Histogram(
    "plenary_captioner_real_time_factor",
    "Decode time divided by the audio time of one recognition call (above 1: slower than "
    "real time).",
    buckets=(0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0),
    registry=None,
)
CAPTION_LATENCY = Histogram(
    "plenary_caption_latency_seconds",
    "From the arrival of the audio that ends an utterance (VAD end or Vosk endpoint) to "
    "its final caption being published.",
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0),
    registry=None,
)
MODEL_MEMORY = Gauge(
    "plenary_captioner_model_memory_bytes",
    "Growth of the process's resident memory while a language's Vosk model loaded.",
    ["language"],
    registry=None,
)
OPUS_REASONS = ("empty", "oversized", "length", "truncated", "toc", "padding", "base64")
OPUS_REFUSED = Counter(
    "plenary_captioner_opus_refused_packets",
    "Jitsi bridge packets refused before the decoder, by reason: empty, oversized, "
    "length (a frame over 1275 bytes or uneven frames), truncated, toc (frame count), "
    "padding, base64 (RFC 6716 section 3.4).",
    ["reason"],
    registry=None,
)
OPUS_DECODED = Counter(
    "plenary_captioner_opus_decoded_packets",
    "Jitsi bridge Opus packets decoded (silent ones are skipped, not decoded).",
    registry=None,
)
REFUSE_KINDS = ("capacity", "session", "share", "memory")
STREAMS_REFUSED = Counter(
    "plenary_captioner_streams_refused",
    "Streams and bridge tags refused, by kind: capacity (captioner.max_streams), session "
    "(captioner.bridge_max_sources), share (a bridge session's fair share), memory "
    "(captioner.max_rss_mb).",
    ["kind"],
    registry=None,
)
DELIVERY_QUEUE = Gauge(
    "plenary_captioner_delivery_queue",
    "Final captions waiting to be delivered to the orchestrator (captioner.delivery_queue "
    "at most).",
    registry=None,
)
DELIVERED = Counter(
    "plenary_captioner_delivered",
    "Caption events the orchestrator took, by kind (final, partial).",
    ["kind"],
    registry=None,
)
DELIVERY_DROPPED = Counter(
    "plenary_captioner_delivery_dropped",
    "Caption events never delivered: finals dropped from a full queue, partials skipped "
    "while the orchestrator was unreachable.",
    ["kind"],
    registry=None,
)
DELIVERY_FAILED = Counter(
    "plenary_captioner_delivery_failed",
    "Caption events the orchestrator refused (HTTP 4xx: bad token or event); dropped.",
    registry=None,
)

METRICS: tuple[Collector, ...] = (
    STREAMS,
    AUDIO_RECEIVED,
    AUDIO_DECODED,
    REAL_TIME_FACTOR,
    CAPTION_LATENCY,
    MODEL_MEMORY,
    OPUS_REFUSED,
    OPUS_DECODED,
    STREAMS_REFUSED,
    DELIVERY_QUEUE,
    DELIVERED,
    DELIVERY_DROPPED,
    DELIVERY_FAILED,
)
for _path in PATHS:
    STREAMS.labels(path=_path)
for _reason in OPUS_REASONS:
    OPUS_REFUSED.labels(reason=_reason)
for _kind in REFUSE_KINDS:
    STREAMS_REFUSED.labels(kind=_kind)
for _kind in ("final", "partial"):
    DELIVERED.labels(kind=_kind)
    DELIVERY_DROPPED.labels(kind=_kind)


def observe_decode(elapsed: float, audio_seconds: float) -> None:
    """One recognition call took ``elapsed`` seconds for ``audio_seconds`` of speech."""
    if audio_seconds > 0:
        AUDIO_DECODED.inc(audio_seconds)
        REAL_TIME_FACTOR.observe(elapsed / audio_seconds)


def rss_bytes() -> float:
    """Resident memory of this process (Linux), 0 where /proc is missing."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return float(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0.0


class EngineCollector(Collector):
    """The engine's thread pool and recognizers, read at scrape time."""

    def __init__(self, engine: Callable[[], Engine | None]) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        engine = self._engine()
        if engine is None:  # still loading its model
            return
        # Decode jobs submitted but not yet picked up by a thread: above zero for long,
        # recognition is falling behind the audio.
        waiting = engine.executor._work_queue.qsize()
        yield GaugeMetricFamily(
            "plenary_captioner_queue_depth",
            "Recognition jobs waiting for a free thread.",
            value=float(waiting),
        )
        yield GaugeMetricFamily(
            "plenary_captioner_threads", "Recognition threads.", value=float(engine.threads)
        )
        yield GaugeMetricFamily(
            "plenary_captioner_streams_limit",
            "Concurrent streams accepted (captioner.max_streams).",
            value=float(engine.settings.max_streams),
        )
        yield GaugeMetricFamily(
            "plenary_captioner_idle_recognizers",
            "Recognizers pooled for the next utterance.",
            value=float(engine.recognizers.idle_count()),
        )
        yield GaugeMetricFamily(
            "plenary_captioner_recognizers_in_use",
            "Recognizers holding an utterance now (at most captioner.max_streams).",
            value=float(engine.recognizers.in_use),
        )
        yield GaugeMetricFamily(
            "plenary_captioner_memory_limit_bytes",
            "captioner.max_rss_mb in bytes (0: no limit); new streams are refused from 90 %.",
            value=float(engine.settings.max_rss_mb * 2**20),
        )
        yield CounterMetricFamily(
            "plenary_captioner_recognizers_created",
            "Vosk recognizers created.",
            value=float(engine.recognizers.created),
        )


def new_captioner_registry(
    engine: Callable[[], Engine | None], *, host: bool = False
) -> CollectorRegistry:
    return new_registry([*METRICS, EngineCollector(engine)], host=host)
