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
    metrics.READ_TOKENS.labels(event="used").inc()
    with metrics.CAPTION_STORE_SECONDS.time(): ...  # a final numbered, stored, published

``ROOMS`` is the one series nobody records: ``metrics_ctx`` refreshes it from the rooms
table at startup and then every ``metrics.poll_interval`` seconds.

Label values must come from a small fixed set (identity sources, denial reasons,
subscriber kinds), never from user input: each value is a new series.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from orchestrator.app_keys import db_key, live_key, settings_key
from orchestrator.jvb import StatsPoller
from orchestrator.rooms.repository import RoomRepository
from plenary.exposition import metrics_view, new_registry, registry_key
from plenary.fanout import FanOut

log = logging.getLogger(__name__)

ROOM_STATES = ("scheduled", "open", "live", "closed")
IDENTITY_SOURCES = ("ldap", "wiki", "event")
SUBSCRIBER_KINDS = ("sse", "text", "json", "irc")
LOGIN_LIMITS = ("account", "address_account", "address")

ROOMS = Gauge(
    "plenary_rooms",
    "Rooms by where their schedule stands: scheduled, open (joinable before the start), "
    "live (a session under way), closed (no session left); refreshed every "
    "metrics.poll_interval seconds.",
    ["state"],
    registry=None,
)
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
LOGINS_LIMITED = Counter(
    "plenary_logins_limited",
    "LDAP login attempts refused by a login limit (orchestrator.login), by limit: account, "
    "address_account, address (the growing delay of one address).",
    ["limit"],
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

CAPTION_STORE_SECONDS = Histogram(
    "plenary_caption_store_latency_seconds",
    "From the orchestrator taking a final caption (in-process bus, HTTP POST or Jigasi post) "
    "to it being numbered, stored and handed to live readers. Time spent before that (speech "
    "recognition: plenary_caption_latency_seconds, the network, the bus queue) is not in it.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=None,
)
READ_TOKENS = Counter(
    "plenary_read_tokens",
    "Personal caption read tokens by event: issued, revoked, used (a request let in by one).",
    ["event"],
    registry=None,
)
READ_TOKEN_EVENTS = ("issued", "revoked", "used")
CORRECTIONS = Counter(
    "plenary_caption_corrections",
    "Captioners' actions by outcome: corrected, undone, typed (accepted); refused (not a "
    "captioner, bad input), limited (rate), late (outside the window), missing (no caption).",
    ["outcome"],
    registry=None,
)
CORRECTION_OUTCOMES = ("corrected", "undone", "typed", "refused", "limited", "late", "missing")

METRICS: tuple[Collector, ...] = (
    ROOMS,
    ATTENDEES_ADMITTED,
    ATTENDEES_DENIED,
    LOGIN_SECONDS,
    LOGINS_LIMITED,
    JWTS_ISSUED,
    TEXT_SUBSCRIBERS,
    TEXT_SENT_BYTES,
    CAPTION_STORE_SECONDS,
    READ_TOKENS,
    CORRECTIONS,
)

# Known label values show as 0 before the first event, so rate() and alerts see them.
for _state in ROOM_STATES:
    ROOMS.labels(state=_state)
for _source in IDENTITY_SOURCES:
    ATTENDEES_ADMITTED.labels(source=_source)
    LOGIN_SECONDS.labels(source=_source)
for _limit in LOGIN_LIMITS:
    LOGINS_LIMITED.labels(limit=_limit)
for _kind in SUBSCRIBER_KINDS:
    TEXT_SUBSCRIBERS.labels(kind=_kind)
    TEXT_SENT_BYTES.labels(kind=_kind)
for _event in READ_TOKEN_EVENTS:
    READ_TOKENS.labels(event=_event)
for _outcome in CORRECTION_OUTCOMES:
    CORRECTIONS.labels(outcome=_outcome)

poller_key = web.AppKey("stats_poller", StatsPoller)


class FanOutCollector(Collector):
    """Caption events published to the orchestrator's live readers (every producer)."""

    def __init__(self, fanout: FanOut[Any]) -> None:
        self._fanout = fanout

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "plenary_caption_events",
            "Caption events (partials, finals and corrections) published to the "
            "orchestrator's live readers.",
            value=float(self._fanout.published),
        )


async def refresh_rooms(repo: RoomRepository, early_minutes: int) -> None:
    """Set ``ROOMS`` to how many rooms are in each state now."""
    now = datetime.now(UTC)
    counts = dict.fromkeys(ROOM_STATES, 0)
    for room in await repo.list():
        counts[room.state(now, early_minutes)] += 1
    for state, count in counts.items():
        ROOMS.labels(state=state).set(count)


async def rooms_loop(repo: RoomRepository, early_minutes: int, interval: float) -> None:
    """Refresh ``ROOMS`` every ``interval`` seconds.

    A gauge refreshed on a timer rather than a collector that reads the rooms table on
    each scrape: collect() is synchronous and runs on the event loop, and reading and
    validating every room there would stall the loop for a large event. A state may lag
    by up to one interval (as the videobridge figures do).
    """
    while True:
        await asyncio.sleep(interval)
        try:
            await refresh_rooms(repo, early_minutes)
        except Exception:
            log.exception("rooms gauge not refreshed")


async def metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """The app's registry and, while it runs, the bridge poller and the rooms gauge's task.

    Needs the database (database_ctx must come first).
    """
    settings = app[settings_key].metrics
    poller = StatsPoller(settings)
    app[poller_key] = poller
    app[registry_key] = new_registry(
        [*METRICS, FanOutCollector(app[live_key]), poller], host=settings.host
    )
    lease = app[settings_key].orchestrator.lease_seconds  # one node polls (orchestrator/jvb.py)
    tasks = []
    if poller.targets:
        polling = poller.run_held(app[db_key], lease)
        tasks.append(asyncio.create_task(polling, name="stats poller"))
    rooms = RoomRepository(app[db_key])
    early = app[settings_key].orchestrator.join_early_minutes
    try:
        await refresh_rooms(rooms, early)  # the first scrape already sees the rooms
    except Exception:
        log.exception("rooms gauge not refreshed")
    tasks.append(
        asyncio.create_task(rooms_loop(rooms, early, settings.poll_interval), name="rooms gauge")
    )
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


def routes() -> list[web.RouteDef]:
    return [web.get("/metrics", metrics_view)]
