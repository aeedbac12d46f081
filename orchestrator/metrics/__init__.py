"""The orchestrator's metrics: rooms, logins, JWTs, text channels, caption events, bridges.

Metric objects are module-level (prometheus_client's idiom) but registered in no global
registry: ``metrics_ctx`` puts them in the app's own registry together with the
videobridge/Jicofo poller and, when ``metrics.host`` is on, host load. Code that makes
a decision records it with one call:

    from orchestrator import metrics
    metrics.ATTENDEES_ADMITTED.labels(source="ldap").inc()
    metrics.ATTENDEES_DENIED.labels(reason="not_in_group").inc()
    with metrics.LOGIN_SECONDS.labels(source="wiki").time(): ...
    metrics.JWTS_ISSUED.inc()
    metrics.ROOMS.labels(state="live").set(3)
    metrics.TEXT_SUBSCRIBERS.labels(kind="sse").inc()  # .dec() when it leaves
    metrics.TEXT_SENT_BYTES.labels(kind="sse").inc(len(chunk))

Label values must come from a small fixed set (identity sources, denial reasons,
subscriber kinds), never from user input: each value is a new series.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

from aiohttp import web
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from bots.captioner.bus import CaptionBus
from orchestrator.jvb import StatsPoller
from orchestrator.keys import bus_key, settings_key
from orchestrator.metrics.exposition import metrics_view, new_registry, registry_key

ROOM_STATES = ("scheduled", "open", "live", "closed")
IDENTITY_SOURCES = ("ldap", "wiki", "event")
SUBSCRIBER_KINDS = ("sse", "text", "json", "irc")

ROOMS = Gauge("plenary_rooms", "Rooms by state.", ["state"], registry=None)
ATTENDEES_ADMITTED = Counter(
    "plenary_attendees_admitted",
    "Attendees let into a room, by identity source.",
    ["source"],
    registry=None,
)
ATTENDEES_DENIED = Counter(
    "plenary_attendees_denied",
    "Attendees refused entry, by reason (bad_credentials, not_in_group, room_closed, ...).",
    ["reason"],
    registry=None,
)
LOGIN_SECONDS = Histogram(
    "plenary_login_duration_seconds",
    "Time to check a login with its identity source (LDAP bind, wiki OAuth exchange).",
    ["source"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=None,
)
JWTS_ISSUED = Counter("plenary_jwts_issued", "Jitsi JWTs issued.", registry=None)
TEXT_SUBSCRIBERS = Gauge(
    "plenary_text_subscribers",
    "Readers of the live text channels by kind (sse, text, json, irc).",
    ["kind"],
    registry=None,
)
TEXT_SENT_BYTES = Counter(
    "plenary_text_sent_bytes",
    "Bytes sent to readers of the live text channels, by kind.",
    ["kind"],
    registry=None,
)

METRICS: tuple[Collector, ...] = (
    ROOMS,
    ATTENDEES_ADMITTED,
    ATTENDEES_DENIED,
    LOGIN_SECONDS,
    JWTS_ISSUED,
    TEXT_SUBSCRIBERS,
    TEXT_SENT_BYTES,
)

# Known label values show as 0 before the first event, so rate() and alerts see them.
for _state in ROOM_STATES:
    ROOMS.labels(state=_state)
for _source in IDENTITY_SOURCES:
    ATTENDEES_ADMITTED.labels(source=_source)
    LOGIN_SECONDS.labels(source=_source)
for _kind in SUBSCRIBER_KINDS:
    TEXT_SUBSCRIBERS.labels(kind=_kind)
    TEXT_SENT_BYTES.labels(kind=_kind)

poller_key = web.AppKey("stats_poller", StatsPoller)


class BusCollector(Collector):
    """Caption events that went through the app's bus (every producer, every consumer)."""

    def __init__(self, bus: CaptionBus) -> None:
        self._bus = bus

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "plenary_caption_events",
            "Caption events (partials and finals) published to the orchestrator's readers.",
            value=float(self._bus.published),
        )


async def metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """The app's registry and, while it runs, the videobridge/Jicofo poller task."""
    settings = app[settings_key].metrics
    poller = StatsPoller(settings)
    app[poller_key] = poller
    app[registry_key] = new_registry(
        [*METRICS, BusCollector(app[bus_key]), poller], host=settings.host
    )
    task = asyncio.create_task(poller.run(), name="stats poller") if poller.targets else None
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def routes() -> list[web.RouteDef]:
    return [web.get("/metrics", metrics_view)]
